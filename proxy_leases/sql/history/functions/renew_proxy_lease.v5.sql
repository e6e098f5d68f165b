-- Fencing: only the current grant's token renews. A worker that was paused past its lease, swept,
-- or replaced by a newer grant learns it here, with an error it cannot miss, and must stop using
-- the proxy. So does a worker whose proxy was blocked while it held it. The lease is measured on
-- the database's clock, not the worker's.
--
-- v4 decides after it waits (docs/concurrency.md): the grant's row is locked first, and the lease is
-- then judged against the clock read after the lock. v3 compared with a clock read at the start of
-- the call inside its UPDATE; PostgreSQL re-checks an UPDATE's condition after a wait only when the
-- row was changed, so a lease that ran out while another transaction merely locked the row was
-- renewed all the same, and the returned lease end could already be past.
-- v5 (0017_finite_intervals) refuses an infinite lease by name (22023, with a hint); v4 let
-- PostgreSQL 17's 'infinity' interval through to its arithmetic, which failed with 22008 and no hint.
-- Runs as its owner, with search_path pg_catalog, pg_temp, as since 0014_least_privilege (README,
-- "Roles and rights").

CREATE OR REPLACE FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lease interval := coalesce(renew_proxy_lease.lease, (SELECT s.lease_duration FROM public.proxy_lease_settings s));
    v_now   timestamptz;
    v_until timestamptz;
    v_row   public.proxies;
BEGIN
    IF renew_proxy_lease.proxy_id IS NULL OR renew_proxy_lease.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(v_lease) THEN
        RAISE EXCEPTION 'lease must be finite, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF v_lease <= interval '0'
       OR least(extract(year FROM v_lease), extract(month FROM v_lease), extract(day FROM v_lease),
                extract(epoch FROM v_lease - date_trunc('day', v_lease))) < 0 THEN
        RAISE EXCEPTION 'lease must be positive, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    IF v_lease > interval '100 years' THEN
        RAISE EXCEPTION 'lease is too long, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Intervals are limited to 100 years: longer ones overflow a timestamp, or are a typo.',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;

    SELECT * INTO v_row
      FROM public.proxies p
     WHERE p.id = renew_proxy_lease.proxy_id AND p.lease_token = renew_proxy_lease.lease_token
       FOR NO KEY UPDATE;
    v_now := clock_timestamp();

    IF v_row.is_in_use AND v_row.is_blocked IS NOT TRUE AND v_row.leased_until > v_now THEN
        UPDATE public.proxies p
           SET leased_until = v_now + v_lease
         WHERE p.id = renew_proxy_lease.proxy_id
        RETURNING p.leased_until INTO v_until;
        RETURN v_until;
    END IF;

    IF v_row.id IS NULL THEN
        SELECT * INTO v_row FROM public.proxies p WHERE p.id = renew_proxy_lease.proxy_id;
    END IF;
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
    'blocked since), judged after waiting for the row, renews nothing and raises SQLSTATE LP001: stop using '
    'the proxy. NULL arguments or a lease <= 0 or over 100 years raise 22023.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
