-- The sweeper, run by pg_cron. Its cost follows the number of proxies held (see stuck_proxies),
-- not the size of any table: the stuck rows are collected once, then each is one primary-key probe.
--
-- Concurrency: rows another transaction has locked are skipped, never waited for (a live write in
-- progress, or another sweep's; the next sweep sees them). Locking re-checks the rule on the
-- latest version of the row, and a fresh grant is neither expired nor past its grace, so a sweep
-- can never free a proxy granted after it started.
-- Each proxy it frees was left behind by a worker that stopped renewing: a strike against it.
--
-- The rows are freed one reason at a time, so that each released event in proxy_lease_events
-- says why (lease_expired, orphaned, inconsistent: named in proxy_leases.event_reason for that
-- statement only), and a sweep that frees anything writes one LOG
-- line naming the containers, as the fleet's "Freed stuck proxies" warning did.
--
-- Since 0014_least_privilege it runs as its owner (SECURITY DEFINER) and is granted to
-- proxy_leases_operator, not to PUBLIC: a caller needs EXECUTE, not the right to write proxies, so
-- this function's own rules are the only way such a caller changes a proxy.
--
-- search_path is pg_catalog, pg_temp, not empty: an empty search_path still searches the caller's
-- temporary schema first for tables and types, so a caller's own pg_temp.text domain would run its
-- CHECK as this function's owner. Listed last, pg_temp is never reached, as every other name is
-- qualified.

CREATE OR REPLACE FUNCTION public.release_stuck_proxies()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_ids     bigint[];
    v_workers text[];
    v_reasons text[];
    v_reason  text;
    v_count   integer;
    v_freed   integer := 0;
    v_counts  text[] := '{}';
BEGIN
    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.worker_id ORDER BY s.id), array_agg(s.reason ORDER BY s.id)
      INTO v_ids, v_workers, v_reasons
      FROM (SELECT s.id, s.worker_id, s.reason
              FROM public.stuck_proxies s
             ORDER BY s.id
               FOR UPDATE SKIP LOCKED) s;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    FOREACH v_reason IN ARRAY ARRAY['lease_expired', 'orphaned', 'inconsistent'] LOOP
        CONTINUE WHEN NOT v_reason = ANY (v_reasons);
        PERFORM set_config('proxy_leases.event_reason', v_reason, true);
        UPDATE public.proxies p
           SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
         WHERE p.id = ANY (ARRAY(SELECT u.id FROM unnest(v_ids, v_reasons) AS u(id, reason) WHERE u.reason = v_reason));
        GET DIAGNOSTICS v_count = ROW_COUNT;
        v_freed := v_freed + v_count;
        v_counts := v_counts || format('%s %s', v_reason, v_count);
    END LOOP;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    RAISE LOG 'release_stuck_proxies: freed % stuck proxies (%) held by %', v_freed,
              array_to_string(v_counts, ', '), public.summarize_proxy_holders(v_workers);
    RETURN v_freed;
END
$$;

COMMENT ON FUNCTION public.release_stuck_proxies() IS
    'Frees every proxy in stuck_proxies and returns how many: leases that expired; proxies whose '
    'worker has no task in processing, once orphan_grace has passed since the grant; rows that break '
    'the lease rule. Each freed proxy gets a strike (see quarantine_after_strikes) and a released event '
    'with that reason in proxy_lease_events; a sweep that frees any writes one LOG line with the count '
    'and the containers. Blocked proxies stay blocked. Never waits on a locked row and never frees a '
    'live grant. Run by the scheduled maintenance; safe to call from anywhere, at any time, concurrently.'
    ' Runs as its owner; EXECUTE is granted to proxy_leases_operator.';
