-- The one definition of a stuck proxy. The sweeper frees exactly these rows; operators can look
-- at them (and why) before it does. It reads only the held proxies, through their partial index.
--
-- v2 writes "its worker has no task in processing" out as two NOT EXISTS against the task tables'
-- partial indexes, where v1 called worker_has_processing_task() once per held proxy. That function
-- runs as its owner with a pinned search_path, so PostgreSQL cannot inline it: every held proxy
-- paid a function call, a save and restore of search_path and two index probes (about 8
-- microseconds each, measured at 1,000,000 proxies: most of a sweep that frees nothing). Written out, the
-- planner reads each partial index once into a hash (or probes it per proxy, whichever it costs
-- lower) and no function is called. The view reads the task tables with its owner's rights, as
-- the function did, so a role granted this view (or the status views) still needs no grant on them.
--
-- The rule is now written twice: here for a whole sweep, and in worker_has_processing_task() for
-- one worker, which the release trigger asks when a task leaves processing. Keep the two the same;
-- tests/test_sweeper.py checks that they agree on every held proxy. NOT EXISTS, never NOT IN: a
-- task in processing with a NULL worker id must not hide every orphan.

CREATE OR REPLACE VIEW public.stuck_proxies AS
SELECT p.id,
       p.worker_id,
       p.leased_at,
       p.leased_until,
       CASE
           WHEN p.is_in_use IS NOT TRUE OR p.worker_id IS NULL OR p.leased_at IS NULL OR p.leased_until IS NULL
               THEN 'inconsistent'
           WHEN p.leased_until <= now()
               THEN 'lease_expired'
           ELSE 'orphaned'
       END AS reason
  FROM public.proxies p
 WHERE (p.is_in_use OR p.worker_id IS NOT NULL)
   AND (   -- half-held: a row the consistency rule forbids (written before the rule existed)
           p.is_in_use IS NOT TRUE OR p.worker_id IS NULL OR p.leased_at IS NULL OR p.leased_until IS NULL
           -- the lease ran out: no heartbeat for a whole lease, whatever else holds
        OR p.leased_until <= now()
           -- orphaned: past the grace after the grant, and its worker has no task in processing
           -- (the same rule as worker_has_processing_task, for every held proxy at once)
        OR (p.leased_at <= now() - (SELECT s.orphan_grace FROM public.proxy_lease_settings s)
            AND NOT EXISTS (SELECT FROM public.catalog_tasks t
                             WHERE t.worker_id = p.worker_id AND t.status = 'processing')
            AND NOT EXISTS (SELECT FROM public.object_tasks t
                             WHERE t.worker_id = p.worker_id AND t.status = 'processing')));

COMMENT ON VIEW public.stuck_proxies IS
    'Proxies the next sweep frees, with the reason: lease_expired (no renewal for a whole lease), '
    'orphaned (past orphan_grace and the worker has no task in processing), inconsistent (a row that '
    'breaks the lease rule). Times are the current transaction''s now(). The orphan rule is '
    'worker_has_processing_task() written out for all held proxies at once, so that a sweep calls no '
    'function per proxy; a test keeps the two in agreement.';
