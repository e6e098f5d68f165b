-- The operator's word: the proxy is good again. Its strikes are forgiven too, so a quarantined
-- proxy gets the full quarantine_after_strikes before it is quarantined again.
-- Its writes reach the audit trail (proxy_lease_events) with reason unblocked_by_operator, named in
-- proxy_leases.event_reason for its statement only (see tg_proxies__record_lease_events).
--
-- Since 0014_least_privilege it runs as its owner (SECURITY DEFINER) and is granted to
-- proxy_leases_operator, not to PUBLIC: a caller needs EXECUTE, not the right to write proxies, so
-- this function's own rules are the only way such a caller changes a proxy.
--
-- search_path is pg_catalog, pg_temp, not empty: an empty search_path still searches the caller's
-- temporary schema first for tables and types, so a caller's own pg_temp.text domain would run its
-- CHECK as this function's owner. Listed last, pg_temp is never reached, as every other name is
-- qualified.

CREATE OR REPLACE FUNCTION public.unblock_proxy(proxy_id bigint)
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
    PERFORM set_config('proxy_leases.event_reason', 'unblocked_by_operator', true);
    UPDATE public.proxies p
       SET is_blocked = false, strike_count = 0
     WHERE p.id = unblock_proxy.proxy_id AND p.is_blocked;
    v_found := FOUND;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    IF v_found THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT FROM public.proxies p WHERE p.id = unblock_proxy.proxy_id) THEN
        RAISE EXCEPTION 'there is no proxy %', coalesce(unblock_proxy.proxy_id::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'SELECT id, blocked_reason FROM proxies WHERE is_blocked;';
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION public.unblock_proxy(bigint) IS
    'Unblocks the proxy, clears its strikes and returns true; false if it was not blocked. An unknown '
    'id raises P0002. The proxy is announced on proxy_available.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_operator.';
