-- The target site banned the proxy: the holder gives it back and nobody gets it until the cooldown
-- ends (run_lease_maintenance unblocks it) or, without a cooldown, until unblock_proxy. A block is
-- a strike: a proxy banned again and again ends up quarantined. Fenced like release_proxy.
-- Its writes reach the audit trail (proxy_lease_events) with reason blocked_by_worker, named in
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

CREATE OR REPLACE FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text,
                                              cooldown interval DEFAULT NULL)
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
    IF block_proxy.proxy_id IS NULL OR block_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    IF block_proxy.reason IS NULL OR btrim(block_proxy.reason) = '' THEN
        RAISE EXCEPTION 'a block needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what the site did, e.g. ''HTTP 403 from example.com''.';
    END IF;
    IF block_proxy.cooldown <= interval '0' THEN
        RAISE EXCEPTION 'cooldown must be positive, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'blocked_by_worker', true);
    UPDATE public.proxies p
       SET is_in_use = false,
           worker_id = NULL,
           is_blocked = true,
           blocked_reason = left(block_proxy.reason, 1000),
           blocked_until = clock_timestamp() + block_proxy.cooldown,
           strike_count = p.strike_count + 1
     WHERE p.id = block_proxy.proxy_id
       AND p.lease_token = block_proxy.lease_token
       AND p.is_in_use
       AND p.leased_until > clock_timestamp();
    v_found := FOUND;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN v_found;
END
$$;

COMMENT ON FUNCTION public.block_proxy(bigint, bigint, text, interval) IS
    'Releases the grant (proxy_id, lease_token) and blocks the proxy with reason: for cooldown, after '
    'which the scheduled maintenance unblocks it, or (cooldown NULL) until unblock_proxy. Counts a '
    'strike. Returns false and changes nothing when the token no longer holds. NULL ids, an empty '
    'reason or a cooldown <= 0 raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
