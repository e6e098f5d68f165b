-- The target site banned the proxy: the holder gives it back and nobody gets it until the cooldown
-- ends (run_lease_maintenance unblocks it) or, without a cooldown, until unblock_proxy. A block is
-- a strike: a proxy banned again and again ends up quarantined.
--
-- v5: a ban describes the proxy, not the lease. It is recorded whenever nobody has been granted the
-- proxy since the caller's grant: with a release when that grant still holds it (even past its
-- lease end, not yet swept), and on its own when the proxy is already free since that grant ended
-- (released_lease_token names it). v4 was fenced like release_proxy, so a worker whose lease was
-- swept while it scraped lost its ban, and the next worker was handed a banned proxy. A proxy
-- granted again since, or unblocked since, is left alone: fencing never touches a newer holder's
-- lease, and an unblock is a later word than the ban. blocked_lease_token names the grant whose ban
-- is in place, so a retry after a lost reply changes nothing. A ban never shortens a block already
-- there (v4 replaced an operator's open-ended block with the worker's cooldown): the later end wins.
-- Like renew_proxy_lease, it locks the row first and judges it after any wait (docs/concurrency.md).
-- The audit trail (proxy_lease_events) gets reason blocked_by_worker, named in
-- proxy_leases.event_reason for its statement only (see tg_proxies__record_lease_events).
-- v6 (0017_finite_intervals) refuses an infinite cooldown by name (22023, with a hint); v5 let
-- PostgreSQL 17's 'infinity' interval through to its arithmetic, which failed with 22008 and no hint.
-- Runs as its owner, with search_path pg_catalog, pg_temp, as since 0014_least_privilege (README,
-- "Roles and rights").

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
    v_row   public.proxies;
    v_until timestamptz;
    v_keep_block boolean;
BEGIN
    IF block_proxy.proxy_id IS NULL OR block_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    IF block_proxy.reason IS NULL OR block_proxy.reason !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'a block needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what the site did, e.g. ''HTTP 403 from example.com''.';
    END IF;
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(block_proxy.cooldown) THEN
        RAISE EXCEPTION 'cooldown must be finite, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF block_proxy.cooldown <= interval '0'
       OR least(extract(year FROM block_proxy.cooldown), extract(month FROM block_proxy.cooldown), extract(day FROM block_proxy.cooldown),
                extract(epoch FROM block_proxy.cooldown - date_trunc('day', block_proxy.cooldown))) < 0 THEN
        RAISE EXCEPTION 'cooldown must be positive, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;
    IF block_proxy.cooldown > interval '100 years' THEN
        RAISE EXCEPTION 'cooldown is too long, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Intervals are limited to 100 years: longer ones overflow a timestamp, or are a typo.',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;

    -- Locked, then judged: the row as it is after any wait, not as this call first saw it.
    SELECT * INTO v_row
      FROM public.proxies p
     WHERE p.id = block_proxy.proxy_id
       AND (p.lease_token = block_proxy.lease_token
            OR (p.lease_token IS NULL AND p.released_lease_token = block_proxy.lease_token))
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- This ban is in place already: a retry after a lost reply changes nothing, and counts no
    -- second strike.
    IF v_row.is_blocked AND v_row.blocked_lease_token = block_proxy.lease_token THEN
        RETURN true;
    END IF;
    v_until := clock_timestamp() + block_proxy.cooldown;
    v_keep_block := v_row.is_blocked AND (v_row.blocked_until IS NULL OR v_row.blocked_until >= v_until);

    PERFORM set_config('proxy_leases.event_reason', 'blocked_by_worker', true);
    -- is_in_use and worker_id cleared: a release if the grant still holds the proxy, nothing if it is
    -- free. A ban never shortens a block in place (an operator's, another worker's): the later end
    -- wins, and no end is the latest.
    UPDATE public.proxies p
       SET is_in_use = false,
           worker_id = NULL,
           is_blocked = true,
           blocked_reason = CASE WHEN v_keep_block THEN p.blocked_reason ELSE left(block_proxy.reason, 1000) END,
           blocked_until = CASE WHEN v_keep_block THEN p.blocked_until ELSE v_until END,
           blocked_lease_token = block_proxy.lease_token,
           strike_count = p.strike_count + 1
     WHERE p.id = block_proxy.proxy_id;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN true;
END
$$;

COMMENT ON FUNCTION public.block_proxy(bigint, bigint, text, interval) IS
    'Blocks the proxy with reason, for cooldown (then the scheduled maintenance unblocks it) or, cooldown '
    'NULL, until unblock_proxy, and counts a strike: releases the grant (proxy_id, lease_token) if it still '
    'holds the proxy, or blocks the free proxy if nobody was granted it since that grant ended. Returns true '
    'when the ban is recorded (a retry of the same ban changes nothing; a block already in place that ends '
    'later is kept); false, changing nothing, when the proxy was granted or unblocked since (or the '
    'token never named it). NULL ids, a blank reason or a cooldown <= 0 or over 100 years raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
