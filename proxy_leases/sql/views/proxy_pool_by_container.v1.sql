-- The report's "active containers" list, with what the incident needed an investigation for: which
-- containers hold proxies, how many of those are stuck, and since when. A container that holds
-- proxies but has no task in processing, with an old latest_renewal, is a dead one.
-- It reads only held proxies and tasks in processing, each through its partial index.

CREATE OR REPLACE VIEW public.proxy_pool_by_container AS
SELECT split_part(x.worker_id, '_', 1)                   AS container_id,
       count(DISTINCT x.worker_id)                       AS workers,
       count(*) FILTER (WHERE x.proxy_id IS NOT NULL)    AS proxies_held,
       count(*) FILTER (WHERE x.proxy_id IS NULL)        AS tasks_processing,
       count(*) FILTER (WHERE x.proxy_id IN (SELECT s.id FROM public.stuck_proxies s)) AS proxies_stuck,
       min(x.leased_at)                                  AS oldest_lease,
       max(x.renewed_at)                                 AS latest_renewal
  FROM (SELECT p.id AS proxy_id, p.worker_id, p.leased_at, p.renewed_at
          FROM public.proxies p
         WHERE p.is_in_use OR p.worker_id IS NOT NULL
        UNION ALL
        SELECT NULL, t.worker_id, NULL, NULL
          FROM public.catalog_tasks t
         WHERE t.status = 'processing' AND t.worker_id IS NOT NULL
        UNION ALL
        SELECT NULL, t.worker_id, NULL, NULL
          FROM public.object_tasks t
         WHERE t.status = 'processing' AND t.worker_id IS NOT NULL) x
 GROUP BY split_part(x.worker_id, '_', 1);

COMMENT ON VIEW public.proxy_pool_by_container IS
    'One row per container that holds a proxy or has a task in processing (container_id: a worker id up '
    'to its first "_"; NULL for half-held rows with no worker). workers: distinct worker ids seen; '
    'proxies_held; tasks_processing (both task tables); proxies_stuck: held proxies the next sweep frees; '
    'oldest_lease: the earliest leased_at; latest_renewal: the last sign of life of any of its grants.';
