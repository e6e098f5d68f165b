-- Workers already send task heartbeats; each one is also the renewal of the worker's proxy lease,
-- so no worker code has to change. Renewing only once a tenth of the lease has passed keeps a
-- fleet that beats every second from rewriting its proxy rows every second.

CREATE OR REPLACE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_now   timestamptz := clock_timestamp();
    v_lease interval := (SELECT s.lease_duration FROM public.proxy_lease_settings s);
BEGIN
    UPDATE public.proxies p
       SET leased_until = v_now + v_lease
     WHERE p.worker_id = NEW.worker_id
       AND p.is_in_use
       AND p.leased_until < v_now + v_lease * 0.9;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() IS
    'Trigger on catalog_tasks and object_tasks: a heartbeat of a task in processing extends the lease '
    'of its worker''s proxies to now + lease_duration (skipped while more than 90% of the lease is left).';
