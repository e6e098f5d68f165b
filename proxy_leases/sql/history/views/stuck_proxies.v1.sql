-- The one definition of a stuck proxy. The sweeper frees exactly these rows; operators can look
-- at them (and why) before it does. It reads only the held proxies, through their partial index.

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
        OR (p.leased_at <= now() - (SELECT s.orphan_grace FROM public.proxy_lease_settings s)
            AND NOT public.worker_has_processing_task(p.worker_id)));

COMMENT ON VIEW public.stuck_proxies IS
    'Proxies the next sweep frees, with the reason: lease_expired (no renewal for a whole lease), '
    'orphaned (past orphan_grace and the worker has no task in processing), inconsistent (a row that '
    'breaks the lease rule). Times are the current transaction''s now().';
