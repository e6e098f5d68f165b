-- Fencing: a release names the grant, not just the proxy, so a worker that lost its lease can
-- never free the proxy someone else holds now. Releasing twice, or too late, is a harmless false.
-- Its writes reach the audit trail (proxy_lease_events) with reason released_by_worker, named in
-- proxy_leases.event_reason for its statement only (see tg_proxies__record_lease_events).
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

CREATE OR REPLACE FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_found boolean;
BEGIN
    IF release_proxy.proxy_id IS NULL OR release_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'released_by_worker', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL
     WHERE p.id = release_proxy.proxy_id
       AND p.lease_token = release_proxy.lease_token
       AND p.is_in_use
       AND p.leased_until > clock_timestamp();
    v_found := FOUND;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN v_found;
END
$$;

COMMENT ON FUNCTION public.release_proxy(bigint, bigint) IS
    'Frees the grant (proxy_id, lease_token) and returns true; a clean release clears the proxy''s '
    'strikes. Returns false and changes nothing when the token no longer holds (lease run out, '
    'released, swept, granted again). NULL arguments raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
