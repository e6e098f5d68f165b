-- Fencing: a release names the grant, not just the proxy, so a worker that lost its lease can
-- never free the proxy someone else holds now. Releasing twice, or too late, is a harmless false.
-- Its writes reach the audit trail (proxy_lease_events) with reason released_by_worker, named in
-- proxy_leases.event_reason for its statement only (see tg_proxies__record_lease_events).
--
-- v4 decides after it waits (docs/concurrency.md): the grant's row is locked first, and the lease is
-- then judged against the clock read after the lock. v3's UPDATE judged it before waiting for a row
-- another transaction had locked, so a lease that ran out during the wait was still released as
-- the worker's (true, clean, strikes cleared) instead of being left to the sweep as an expiry.
-- Runs as its owner, with search_path pg_catalog, pg_temp, as since 0014_least_privilege (README,
-- "Roles and rights").

CREATE OR REPLACE FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_leased_until timestamptz;
BEGIN
    IF release_proxy.proxy_id IS NULL OR release_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;

    SELECT p.leased_until INTO v_leased_until
      FROM public.proxies p
     WHERE p.id = release_proxy.proxy_id AND p.lease_token = release_proxy.lease_token AND p.is_in_use
       FOR NO KEY UPDATE;
    IF v_leased_until IS NULL OR v_leased_until <= clock_timestamp() THEN
        RETURN false;
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'released_by_worker', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL
     WHERE p.id = release_proxy.proxy_id;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN true;
END
$$;

COMMENT ON FUNCTION public.release_proxy(bigint, bigint) IS
    'Frees the grant (proxy_id, lease_token) and returns true; a clean release clears the proxy''s '
    'strikes. Returns false and changes nothing when the token no longer holds (lease run out, '
    'released, swept, granted again), judged after waiting for the row. NULL arguments raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
