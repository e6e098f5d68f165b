-- Workers already send task heartbeats; each one is also the renewal of the worker's proxy lease,
-- so no worker code has to change. A heartbeat counts when heartbeat_at moves forward (a value
-- written into the past is not a sign of life); the lease then runs from the database's clock, not
-- the client's, so a worker with a skewed clock is not cut off. Renewing only once a tenth of the
-- lease has passed keeps a fleet that beats every second from rewriting its proxy rows every second.
--
-- A proxy row someone else has locked is skipped: the next heartbeat renews it. Waiting here would
-- put the task row before the proxy row in this transaction's locks, the opposite of a worker that
-- releases its proxy and then finishes its task, and the two could deadlock.
-- A lease that has run out is not brought back: its token no longer holds (see renew_proxy_lease),
-- and the sweep frees the proxy. Nor is a proxy blocked while held renewed.
-- SECURITY DEFINER: the fleet's roles need no rights on proxy_lease_settings.
--
-- Since 0014_least_privilege: search_path is pg_catalog, pg_temp, not empty: an empty search_path
-- still searches the caller's temporary schema first for tables and types, so a caller's own
-- pg_temp.text domain would run its CHECK as this function's owner. Listed last, pg_temp is never
-- reached, as every other name is qualified.

CREATE OR REPLACE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lease interval;
    v_until timestamptz;
BEGIN
    IF NEW.heartbeat_at IS NULL OR NEW.heartbeat_at <= OLD.heartbeat_at THEN
        RETURN NULL;
    END IF;
    v_lease := (SELECT s.lease_duration FROM public.proxy_lease_settings s);
    v_until := clock_timestamp() + v_lease;

    UPDATE public.proxies p
       SET leased_until = v_until
     WHERE p.id = ANY (ARRAY(SELECT h.id
                               FROM public.proxies h
                              WHERE h.worker_id = NEW.worker_id
                                AND h.is_in_use
                                AND h.is_blocked IS NOT TRUE
                                AND h.leased_until > clock_timestamp()
                                AND h.leased_until < v_until - v_lease * 0.1
                                FOR UPDATE SKIP LOCKED));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() IS
    'Trigger on catalog_tasks and object_tasks: when the heartbeat_at of a task in processing moves '
    'forward, the lease of its worker''s proxies is extended to now + lease_duration (skipped while '
    'more than 90% of the lease is left, and for a proxy row another transaction has locked). A lease '
    'that has run out, or a proxy blocked while held, is not renewed.';
