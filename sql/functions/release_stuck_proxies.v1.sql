-- The sweeper, run by pg_cron. It reads only the proxies that are held (a partial index) and, for
-- each, probes the task tables through their partial indexes: its cost follows the number of
-- proxies in use, not the size of any table.
--
-- Concurrency: rows another transaction has locked are skipped, never waited for (they are a live
-- write in progress, or another sweep's; the next sweep sees them). The conditions are checked
-- again on the latest row version when the row is locked, and a fresh grant is neither expired
-- nor past its grace, so a sweep can never free a proxy granted after it started.

CREATE OR REPLACE FUNCTION public.release_stuck_proxies()
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_now   timestamptz := clock_timestamp();
    v_grace interval := (SELECT s.orphan_grace FROM public.proxy_lease_settings s);
    v_freed integer;
BEGIN
    WITH stuck AS (
        SELECT p.id
          FROM public.proxies p
         WHERE (p.is_in_use OR p.worker_id IS NOT NULL)
           AND (   -- half-held: a row the consistency rule forbids (written before the rule existed)
                   p.is_in_use IS NOT TRUE OR p.worker_id IS NULL
                OR p.leased_at IS NULL OR p.leased_until IS NULL
                   -- the lease ran out: no heartbeat for a whole lease, whatever else holds
                OR p.leased_until <= v_now
                   -- orphaned: past the grace, and its worker has no task in processing
                OR (p.leased_at <= v_now - v_grace AND NOT public.worker_has_processing_task(p.worker_id)))
         ORDER BY p.id
           FOR UPDATE SKIP LOCKED
    )
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL
      FROM stuck
     WHERE p.id = stuck.id;

    GET DIAGNOSTICS v_freed = ROW_COUNT;
    RETURN v_freed;
END
$$;

COMMENT ON FUNCTION public.release_stuck_proxies() IS
    'Frees every stuck proxy and returns how many: leases that expired; proxies whose worker has no '
    'task in processing, once orphan_grace has passed since the grant; rows that break the lease rule. '
    'Blocked proxies stay blocked. Never waits on a locked row and never frees a live grant. '
    'Scheduled by pg_cron; safe to call from anywhere, at any time, concurrently.';
