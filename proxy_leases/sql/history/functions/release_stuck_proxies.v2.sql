-- The sweeper, run by pg_cron. Its cost follows the number of proxies held (see stuck_proxies),
-- not the size of any table: the ids are collected once, then each is one primary-key probe.
--
-- Concurrency: rows another transaction has locked are skipped, never waited for (a live write in
-- progress, or another sweep's; the next sweep sees them). Locking re-checks the rule on the
-- latest version of the row, and a fresh grant is neither expired nor past its grace, so a sweep
-- can never free a proxy granted after it started.
-- Each proxy it frees was left behind by a worker that stopped renewing: a strike against it.

CREATE OR REPLACE FUNCTION public.release_stuck_proxies()
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_freed integer;
BEGIN
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
     WHERE p.id = ANY (ARRAY(SELECT s.id
                               FROM public.stuck_proxies s
                              ORDER BY s.id
                                FOR UPDATE SKIP LOCKED));

    GET DIAGNOSTICS v_freed = ROW_COUNT;
    RETURN v_freed;
END
$$;

COMMENT ON FUNCTION public.release_stuck_proxies() IS
    'Frees every proxy in stuck_proxies and returns how many: leases that expired; proxies whose '
    'worker has no task in processing, once orphan_grace has passed since the grant; rows that break '
    'the lease rule. Each freed proxy gets a strike (see quarantine_after_strikes). Blocked proxies '
    'stay blocked. Never waits on a locked row and never frees a live grant. Run by the scheduled '
    'maintenance; safe to call from anywhere, at any time, concurrently.';
