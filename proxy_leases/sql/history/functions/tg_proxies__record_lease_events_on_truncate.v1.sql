-- TRUNCATE fires no row triggers: without this, emptying proxies would end every grant in it
-- without a trace. Each proxy held at that moment gets its released event, as a DELETE would give it.
-- "At that moment" needs a snapshot taken after TRUNCATE's lock, which only READ COMMITTED gives:
-- under REPEATABLE READ the rows read here could be older than the rows truncated, and a grant
-- would be closed twice or never.

CREATE OR REPLACE FUNCTION public.tg_proxies__record_lease_events_on_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'TRUNCATE proxies under % isolation would record the wrong grants as ended',
                        upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Truncate proxies in a READ COMMITTED transaction, so that the audit trail sees the rows '
                         'as they are once the table is locked.';
    END IF;
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
    'proxy_lease_events for every proxy held at that moment. Refuses (55000) outside READ COMMITTED.';
