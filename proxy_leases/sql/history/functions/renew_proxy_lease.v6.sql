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
-- v6 (0018_wrong_call_help) helps a wrong call. Arguments swapped (the token first, as in
-- renew_proxy_lease(1796596910492538, 65)) raise 22023 (raise_if_lease_arguments_swapped) with a hint showing the call in the right
-- order, instead of LP001 telling a worker whose lease may well hold to stop using its proxy; the
-- check runs only once the pair named no row, so a renewal that succeeds pays nothing for it. An
-- explicit lease shorter than orphan_grace draws a WARNING: a bare number is seconds ('30' is 30
-- seconds), which is rarely what was meant (README, "Bad input"). It is still granted as asked:
-- the value cannot tell '30' from interval '30 seconds'. v6 sets leased_until to now + lease, as
-- every version did, and says so: a shorter lease moves the end earlier.
-- Runs as its owner, with search_path pg_catalog, pg_temp, as since 0014_least_privilege (README,
-- "Roles and rights").

CREATE OR REPLACE FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_settings public.proxy_lease_settings;
    v_lease    interval;
    v_now      timestamptz;
    v_until    timestamptz;
    v_row      public.proxies;
BEGIN
    SELECT * INTO v_settings FROM public.proxy_lease_settings s;
    v_lease := coalesce(renew_proxy_lease.lease, v_settings.lease_duration);
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
    -- Valid, but a bare number is seconds: '30' is 00:00:30, not half an hour. Granted as asked.
    IF v_lease < v_settings.orphan_grace THEN
        RAISE WARNING 'lease % is shorter than orphan_grace (%)', v_lease, v_settings.orphan_grace
            USING ERRCODE = '01000',  -- warning
                  DETAIL = 'An interval written as a bare number is seconds. The lease is set as asked, and ends '
                           'sooner than the time the database gives a new grant to start its task.',
                  HINT = format('If you meant minutes, write %s; NULL (or nothing) gives lease_duration (%s). '
                                'A lease this short on purpose draws this warning on every call.',
                                CASE WHEN extract(epoch FROM v_lease) = trunc(extract(epoch FROM v_lease))
                                     THEN format('''%s minutes''', trunc(extract(epoch FROM v_lease)))
                                     ELSE '''<n> minutes''' END,
                                v_settings.lease_duration);
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
        -- The pair named no grant: arguments swapped raise 22023 rather than LP001 below.
        PERFORM public.raise_if_lease_arguments_swapped(
            'renew_proxy_lease', renew_proxy_lease.proxy_id, renew_proxy_lease.lease_token, 'renewed',
            CASE WHEN renew_proxy_lease.lease IS NULL THEN '' ELSE ', ' || quote_literal(renew_proxy_lease.lease::text) END);
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
    'Sets the lease end of the grant (proxy_id, lease_token) to now + lease (NULL: lease_duration), earlier '
    'than before if lease is shorter, and returns the new leased_until. A token that no longer holds (lease '
    'run out, released, swept, granted again, proxy blocked since), judged after waiting for the row, renews '
    'nothing and raises SQLSTATE LP001: stop using the proxy. NULL arguments, a lease <= 0 or over 100 years, '
    'or the two ids swapped (the hint shows the call in order) raise 22023. A lease shorter than orphan_grace '
    'is set as asked, with a WARNING: a bare number such as ''30'' is seconds.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
