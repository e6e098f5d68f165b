-- Fencing: only the current grant's token renews. A worker that was paused past its lease, swept,
-- or replaced by a newer grant learns it here, with an error it cannot miss, and must stop using
-- the proxy. So does a worker whose proxy was blocked while it held it. The lease is measured on
-- the database's clock, not the worker's.
--
-- Since 0014_least_privilege it runs as its owner (SECURITY DEFINER) and is granted to
-- proxy_leases_worker and proxy_leases_operator, not to PUBLIC: a caller needs EXECUTE, not the
-- right to write proxies, so this function's own rules are the only way such a caller changes a
-- proxy.
--
-- search_path is pg_catalog, pg_temp, not empty: an empty search_path still searches the caller's
-- temporary schema first for tables and types, so a caller's own pg_temp.text domain would run its
-- CHECK as this function's owner. Listed last, pg_temp is never reached, as every other name is
-- qualified.

CREATE OR REPLACE FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lease interval := coalesce(renew_proxy_lease.lease, (SELECT s.lease_duration FROM public.proxy_lease_settings s));
    v_until timestamptz;
    v_now   timestamptz := clock_timestamp();
    v_row   public.proxies;
BEGIN
    IF renew_proxy_lease.proxy_id IS NULL OR renew_proxy_lease.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    IF v_lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be positive, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;

    UPDATE public.proxies p
       SET leased_until = v_now + v_lease
     WHERE p.id = renew_proxy_lease.proxy_id
       AND p.lease_token = renew_proxy_lease.lease_token
       AND p.is_in_use
       AND p.is_blocked IS NOT TRUE
       AND p.leased_until > v_now
    RETURNING p.leased_until INTO v_until;

    IF v_until IS NOT NULL THEN
        RETURN v_until;
    END IF;

    SELECT * INTO v_row FROM public.proxies p WHERE p.id = renew_proxy_lease.proxy_id;
    RAISE EXCEPTION 'lease % on proxy % no longer holds', renew_proxy_lease.lease_token, renew_proxy_lease.proxy_id
        USING ERRCODE = 'LP001',
              DETAIL = CASE
                  WHEN v_row.id IS NULL THEN 'There is no proxy with that id.'
                  WHEN v_row.lease_token IS NULL THEN 'The proxy is free: it was released or swept.'
                  WHEN v_row.lease_token <> renew_proxy_lease.lease_token
                      THEN 'The proxy is held under another token: it was granted again since.'
                  WHEN v_row.is_blocked
                      THEN format('The proxy was blocked since: %s', coalesce(v_row.blocked_reason, 'no reason given'))
                  ELSE format('The lease ran out at %s.', v_row.leased_until)
              END,
              HINT = 'Stop using this proxy now and call acquire_proxy for another.';
END
$$;

COMMENT ON FUNCTION public.renew_proxy_lease(bigint, bigint, interval) IS
    'Extends the grant (proxy_id, lease_token) to now + lease (NULL: lease_duration) and returns the new '
    'leased_until. A token that no longer holds (lease run out, released, swept, granted again, proxy '
    'blocked since) renews nothing and raises SQLSTATE LP001: stop using the proxy. NULL arguments or '
    'a lease <= 0 raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
