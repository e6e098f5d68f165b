-- The one way a worker should take a proxy. One call grants at most one proxy, and a worker holds
-- at most one: asking again returns the grant it already has, renewed, with the same token (a retry
-- after a lost reply is harmless).
--
-- Concurrency: the free proxy is picked and locked in its own statement (LIMIT 1 ... SKIP LOCKED
-- into a variable), then granted by primary key, so the pick can never run twice inside the
-- UPDATE and grant a second row. Callers skip rows others are taking and never wait for each
-- other; the only wait is between two calls for the same worker id, serialized by a
-- transaction-scoped advisory lock so that both cannot grant.
--
-- Rotation: the proxy free for the longest goes first (released_at, never-used ones first), so
-- the whole pool shares the wear. proxies_free_rotation_idx makes the pick one index probe.
--
-- Each write names its reason for the audit trail (proxy_lease_events) in proxy_leases.event_reason,
-- for that statement only (see tg_proxies__record_lease_events).
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

CREATE OR REPLACE FUNCTION public.acquire_proxy(worker_id text, lease interval DEFAULT NULL)
RETURNS TABLE (proxy_id bigint, address text, lease_token bigint, leased_until timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_lease interval := coalesce(acquire_proxy.lease, (SELECT s.lease_duration FROM public.proxy_lease_settings s));
    v_proxy bigint;
BEGIN
    IF acquire_proxy.worker_id IS NULL OR acquire_proxy.worker_id !~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}_[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'malformed worker_id %', coalesce(quote_literal(left(acquire_proxy.worker_id, 200)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A worker id is <container_id>_<n>: 1 to 128 letters, digits, ".", ":" or "-", '
                           'starting with a letter or digit, then "_" and a number of at most 19 digits.',
                  HINT = 'release_container_proxies(container_id) frees a container''s proxies by that prefix, '
                         'so every worker id must have it.';
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
    -- Under a snapshot older than the advisory lock, a second call for the same worker would not
    -- see the first one's grant and would take a second proxy.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'acquire_proxy needs READ COMMITTED, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run SET TRANSACTION ISOLATION LEVEL READ COMMITTED first, or call it in autocommit '
                         'mode where default_transaction_isolation is read committed.';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('proxy_leases.acquire_proxy'), hashtext(acquire_proxy.worker_id));

    -- What this worker holds but may no longer use (lease run out, or blocked since) goes back first;
    -- a lease that ran out is a strike, as if the sweep had freed it.
    PERFORM set_config('proxy_leases.event_reason', 'lease_expired', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
     WHERE p.worker_id = acquire_proxy.worker_id AND p.is_in_use
       AND p.leased_until <= clock_timestamp();
    PERFORM set_config('proxy_leases.event_reason', 'blocked_while_held', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL
     WHERE p.worker_id = acquire_proxy.worker_id AND p.is_in_use
       AND p.is_blocked IS TRUE;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    SELECT h.id INTO v_proxy
      FROM public.proxies h
     WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
     ORDER BY h.leased_at, h.id
     LIMIT 1
       FOR UPDATE;

    IF v_proxy IS NULL THEN
        SELECT f.id INTO v_proxy
          FROM public.proxies f
         WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE
         ORDER BY f.released_at NULLS FIRST, f.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
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
    '(proxy_id, address, lease_token, leased_until); no row when none is free (LISTEN proxy_available). '
    'A worker that already holds a proxy gets that grant back, renewed, with the same token. Hands out '
    'the proxy free for the longest first; the grant is logged in proxy_lease_events (reason acquired). '
    'Concurrent callers never wait for each other and never get '
    'the same proxy. Malformed worker_id or a lease <= 0 or over 100 years raise 22023; any isolation level but READ '
    'COMMITTED raises 0A000.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';
