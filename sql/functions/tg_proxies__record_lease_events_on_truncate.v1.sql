-- TRUNCATE fires no row triggers: without this, emptying proxies would end every grant in it
-- without a trace. Each proxy held at that moment gets its released event, as a DELETE would give it.

CREATE OR REPLACE FUNCTION public.tg_proxies__record_lease_events_on_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO public.proxy_lease_events
        (proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until, db_user)
    SELECT p.id, 'released', 'proxy_deleted', p.worker_id, p.lease_token, p.leased_at,
           coalesce(p.renewed_at, p.leased_at), p.leased_until,
           coalesce(nullif(current_setting('role'), 'none'), session_user)
      FROM public.proxies p
     WHERE p.lease_token IS NOT NULL
     ORDER BY p.id;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__record_lease_events_on_truncate() IS
    'Trigger on proxies, before TRUNCATE: appends a released event (reason proxy_deleted) to '
    'proxy_lease_events for every proxy held at that moment.';
