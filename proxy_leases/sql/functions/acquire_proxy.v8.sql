-- The one way a worker should take a proxy. One call grants at most one proxy, and a worker holds
-- at most one: asking again returns the grant it already has, renewed, with the same token (a retry
-- after a lost reply is harmless).
--
-- v5 decides after it waits (docs/concurrency.md). What the worker holds is locked first, and only
-- then judged: lease run out against the clock read after the lock, blocked from the locked row. v4
-- judged both before a wait and acted on that judgement after it, so a proxy blocked, or a lease
-- that ran out, while the call waited came back as a live grant.
--
-- Lock order: the worker's proxy rows first (waiting for whoever has them), then the worker's
-- advisory lock, never the other way round. v4 waited for the row while holding the advisory lock,
-- so a transaction that had locked that row (a task claim whose heartbeat renewed it) and then
-- called acquire_proxy for the same worker deadlocked with a retried call. After the advisory lock a
-- proxy granted to this worker in the meantime, by a call that has committed, is locked without
-- waiting: if someone holds it, the call fails with 55P03 and can be retried.
--
-- The free proxy is picked and locked in its own statement (LIMIT 1 ... SKIP LOCKED into a
-- variable), then granted by primary key, so the pick can never run twice inside the UPDATE and
-- grant a second row. Concurrent callers for different workers never wait for each other.
-- Rotation: the proxy free for the longest goes first (released_at, never-used ones first), through
-- proxies_free_rotation_idx. Each write names its reason for the audit trail in
-- proxy_leases.event_reason, for that statement only (see tg_proxies__record_lease_events).
-- v6 (0017_finite_intervals) refuses an infinite lease by name (22023, with a hint); v5 let
-- PostgreSQL 17's 'infinity' interval through to its arithmetic, which failed with 22008 and no hint.
-- v7 (0018_wrong_call_help): an explicit lease shorter than orphan_grace draws a WARNING, with a
-- hint. acquire_proxy('c_2', '30') is a 30-second lease: a quoted bare number is read as an interval
-- of that many seconds. It is still granted as asked, since the value cannot tell '30' from interval
-- '30 seconds', and an error would break calls that mean it; no (text, text) overload either, which
-- would take every call whose lease is an untyped literal or an untyped parameter (asyncpg's $2).
-- orphan_grace is the threshold because it is the time the database itself gives a new grant to
-- start its task: a lease that ends sooner is short by the fleet's own measure (README, "Bad input").
-- v8 (0022_self_healing) heals an exhausted pool without the scheduler. When no proxy is free, it
-- takes over an unblocked one whose lease ran out (the first the search finds: no order, which
-- would sort every one that ran out), freed as the sweep frees it (a strike,
-- reason lease_expired in the trail, a LOG line), so that a fleet stalled by dead workers' leases
-- recovers at its next call whether or not pg_cron runs. One per call, as each caller needs one:
-- concurrent callers take different ones (SKIP LOCKED), none waits; at most 4 when the strikes
-- quarantine them. What it costs, and why no index: docs/server-faults.md.
-- A lease longer than longest_lease is refused up front, as every write to proxies refuses it.
-- Runs as its owner, with search_path pg_catalog, pg_temp, as since 0014_least_privilege (README,
-- "Roles and rights").

CREATE OR REPLACE FUNCTION public.acquire_proxy(worker_id text, lease interval DEFAULT NULL)
RETURNS TABLE (proxy_id bigint, address text, lease_token bigint, leased_until timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_settings public.proxy_lease_settings;
    v_longest  interval;
    v_lease  interval;
    v_locked bigint[];
    v_held   record;
    v_now    timestamptz;
    v_proxy  bigint;
    v_ran_out record;
    v_quarantined boolean;
    v_attempt integer;
BEGIN
    SELECT * INTO v_settings FROM public.proxy_lease_settings s;
    v_lease := coalesce(acquire_proxy.lease, v_settings.lease_duration);
    IF acquire_proxy.worker_id IS NULL OR acquire_proxy.worker_id !~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}_[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'malformed worker_id %', coalesce(quote_literal(left(acquire_proxy.worker_id, 200)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A worker id is <container_id>_<n>: 1 to 128 letters, digits, ".", ":" or "-", '
                           'starting with a letter or digit, then "_" and a number of at most 19 digits.',
                  HINT = 'Pass the calling worker''s own id, such as ''8b4f59aa_3'' (container 8b4f59aa, worker 3): '
                         'release_container_proxies(container_id) frees a container''s proxies by that prefix, '
                         'so every worker id must have it.';
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
    -- longest_lease is at least an hour, so a shorter lease needs no look at it, and the call reads
    -- the new column only when asked for more: a call that a downgrade dropping the column overtakes
    -- (it found this version just before the commit) then fails only if it asked for hours.
    IF v_lease > interval '1 hour' THEN
        v_longest := (SELECT s.longest_lease FROM public.proxy_lease_settings s);
    END IF;
    IF v_lease > v_longest THEN
        RAISE EXCEPTION 'lease is too long, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The longest lease is longest_lease, %s: a lease that never ends hides its proxy '
                                  'from every reclaim.', v_longest),
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration, and renew while the work goes on.';
    END IF;
    -- Under a snapshot older than the advisory lock, a second call for the same worker would not
    -- see the first one's grant and would take a second proxy.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'acquire_proxy needs READ COMMITTED, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run SET TRANSACTION ISOLATION LEVEL READ COMMITTED first, or call it in autocommit '
                         'mode where default_transaction_isolation is read committed.';
    END IF;
    -- Valid, but a bare number is seconds: '30' is 00:00:30, not half an hour. Granted as asked.
    IF v_lease < v_settings.orphan_grace THEN
        RAISE WARNING 'lease % is shorter than orphan_grace (%)', v_lease, v_settings.orphan_grace
            USING ERRCODE = '01000',  -- warning
                  DETAIL = 'An interval written as a bare number is seconds. The lease is granted as asked, and ends '
                           'sooner than the time the database gives a new grant to start its task.',
                  HINT = format('If you meant minutes, write %s; NULL (or nothing) gives lease_duration (%s). '
                                'A lease this short on purpose draws this warning on every call.',
                                CASE WHEN extract(epoch FROM v_lease) = trunc(extract(epoch FROM v_lease))
                                     THEN format('''%s minutes''', trunc(extract(epoch FROM v_lease)))
                                     ELSE '''<n> minutes''' END,
                                v_settings.lease_duration);
    END IF;

    -- 1. What the worker holds, locked: this waits for any transaction that has one of these rows.
    SELECT array_agg(h.id) INTO v_locked
      FROM (SELECT h.id FROM public.proxies h
             WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
             ORDER BY h.id
               FOR UPDATE) h;

    -- 2. Two calls for a worker that holds nothing take turns here, so that both cannot grant.
    PERFORM pg_advisory_xact_lock(hashtext('proxy_leases.acquire_proxy'), hashtext(acquire_proxy.worker_id));

    -- 3. A proxy granted to the worker since step 1 (by a call that committed while this one waited)
    -- is locked too, but without waiting: waiting for a row while holding the advisory lock is the
    -- deadlock this order exists to prevent.
    IF EXISTS (SELECT FROM public.proxies h
                WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                  AND h.id <> ALL (coalesce(v_locked, '{}'))) THEN
        BEGIN
            PERFORM FROM public.proxies h
              WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                FOR UPDATE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'another transaction is changing the proxy of worker %', acquire_proxy.worker_id
                USING ERRCODE = 'lock_not_available',
                      DETAIL = 'The proxy was granted to this worker while this call waited, and is locked now.',
                      HINT = 'Retry acquire_proxy: it returns the grant the worker holds.';
        END;
    END IF;

    -- 4. Judged on the locked rows, against the clock after the waits. What the worker holds but
    -- may no longer use goes back first; a lease that ran out is a strike, as if the sweep freed it.
    v_now := clock_timestamp();
    FOR v_held IN SELECT h.id, h.leased_until, h.is_blocked
                    FROM public.proxies h
                   WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                   ORDER BY h.leased_at, h.id LOOP
        IF v_held.leased_until <= v_now THEN
            PERFORM set_config('proxy_leases.event_reason', 'lease_expired', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
             WHERE p.id = v_held.id;
        ELSIF v_held.is_blocked IS TRUE THEN
            PERFORM set_config('proxy_leases.event_reason', 'blocked_while_held', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL
             WHERE p.id = v_held.id;
        ELSIF v_proxy IS NULL THEN
            v_proxy := v_held.id;
        END IF;
    END LOOP;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    IF v_proxy IS NULL THEN
        SELECT f.id INTO v_proxy
          FROM public.proxies f
         WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE
         ORDER BY f.released_at NULLS FIRST, f.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
    END IF;


    -- 5. None free: take over a proxy whose lease ran out, freed first as the sweep frees it. The
    -- row is judged once locked (a locked row that changed is re-checked against its new version and
    -- the clock) and, locked by this call, cannot change before its release. Its strike may
    -- quarantine it: then another, up to 4 per call.
    IF v_proxy IS NULL THEN
        FOR v_attempt IN 1..4 LOOP
            SELECT e.id, e.worker_id INTO v_ran_out
              FROM public.proxies e
             WHERE e.is_in_use AND e.leased_until <= clock_timestamp() AND e.is_blocked IS NOT TRUE
             LIMIT 1
               FOR UPDATE SKIP LOCKED;
            EXIT WHEN NOT FOUND;
            PERFORM set_config('proxy_leases.event_reason', 'lease_expired', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
             WHERE p.id = v_ran_out.id
            RETURNING p.is_blocked INTO v_quarantined;
            PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
            RAISE LOG 'acquire_proxy: no proxy was free for worker %; freed proxy % of worker %, whose lease ran out%',
                      acquire_proxy.worker_id, v_ran_out.id, v_ran_out.worker_id,
                      CASE WHEN v_quarantined IS TRUE THEN ' (quarantined by that strike)' ELSE '' END;
            IF v_quarantined IS NOT TRUE THEN
                v_proxy := v_ran_out.id;
                EXIT;
            END IF;
        END LOOP;
        IF v_proxy IS NULL THEN
            RETURN;
        END IF;
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'acquired', true);
    RETURN QUERY
    UPDATE public.proxies p
       SET is_in_use = true,
           worker_id = acquire_proxy.worker_id,
           leased_until = clock_timestamp() + v_lease
     WHERE p.id = v_proxy
    RETURNING p.id::bigint, public.proxy_address(p), p.lease_token, p.leased_until;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
END
$$;

COMMENT ON FUNCTION public.acquire_proxy(text, interval) IS
    'Grants the worker one free, unblocked proxy for lease (NULL: lease_duration) and returns '
    '(proxy_id, address, lease_token, leased_until); no row when none is free or can be taken over (LISTEN '
    'proxy_available). '
    'A worker that already holds a proxy gets that grant back, with the same token and its lease end set '
    'to now + lease, unless its '
    'lease ran out or it was blocked (judged after any wait): that goes back first. Hands out '
    'the proxy free for the longest first; the grant is logged in proxy_lease_events (reason acquired). '
    'Calls for different workers never wait for each other and never get the same proxy. When none is free, '
    'it takes over an unblocked one whose lease ran out, freed first as release_stuck_proxies would (strike, reason '
    'lease_expired; another, up to 4, when the strike quarantines it), so an exhausted pool heals without '
    'the scheduler. Malformed '
    'worker_id or a lease <= 0 or over longest_lease raise 22023; any isolation level but READ COMMITTED '
    'raises 0A000; 55P03 (retry) when a proxy granted to the worker during the call is locked by another '
    'transaction. A lease shorter than orphan_grace is granted as asked, with a WARNING: a bare number such '
    'as ''30'' is seconds. Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
