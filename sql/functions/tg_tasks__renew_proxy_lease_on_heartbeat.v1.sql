-- Workers already send task heartbeats; each one is also the renewal of the worker's proxy lease,
-- so no worker code has to change. The lease runs from the heartbeat's own time (never from later
-- than now), so a heartbeat_at written into the past renews nothing, and a dead worker's proxy is
-- free at the latest one lease after its last heartbeat. Renewing only once a tenth of the lease
-- has passed keeps a fleet that beats every second from rewriting its proxy rows every second.

CREATE OR REPLACE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_lease interval := (SELECT s.lease_duration FROM public.proxy_lease_settings s);
    v_until timestamptz := least(NEW.heartbeat_at, clock_timestamp()) + v_lease;
BEGIN
    UPDATE public.proxies p
       SET leased_until = v_until
     WHERE p.worker_id = NEW.worker_id
       AND p.is_in_use
       AND p.leased_until < v_until - v_lease * 0.1;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() IS
    'Trigger on catalog_tasks and object_tasks: a heartbeat of a task in processing extends the lease '
    'of its worker''s proxies to heartbeat_at + lease_duration (heartbeat_at capped at now), when that '
    'moves the lease forward by more than a tenth of lease_duration.';
