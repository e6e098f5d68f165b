-- The report's statistics block, from one query at any moment: the pool split into in use, blocked
-- and free (the three add up to total), and how many of those in use the next sweep frees.
-- "Stuck" is stuck_proxies, the sweeper's own definition, counted, not copied.
--
-- Cost: one pass over proxies for the four counts (a parallel sequential scan; 65 to 80 ms at
-- 1,000,000 proxies, measured), plus stuck_proxies, which reads only the held proxies through
-- their partial index and the task tables through theirs. Fine for a dashboard every few seconds;
-- not a query to run per task.

CREATE OR REPLACE VIEW public.proxy_pool_status AS
SELECT count(*)                                                                 AS total,
       count(*) FILTER (WHERE p.is_in_use IS TRUE)                              AS in_use,
       count(*) FILTER (WHERE p.is_in_use IS NOT TRUE AND p.is_blocked IS TRUE) AS blocked,
       count(*) FILTER (WHERE p.is_in_use IS NOT TRUE AND p.is_blocked IS NOT TRUE) AS free,
       (SELECT count(*) FROM public.stuck_proxies)                              AS stuck
  FROM public.proxies p;

COMMENT ON VIEW public.proxy_pool_status IS
    'The proxy pool in one row: total = in_use + blocked + free. in_use: held by a worker (blocked or '
    'not); blocked: not held and blocked (cooldown or quarantine); free: neither, what acquire_proxy hands '
    'out; stuck: of in_use, how many the next sweep frees (the rows of stuck_proxies).';
COMMENT ON COLUMN public.proxy_pool_status.total IS 'Every proxy.';
COMMENT ON COLUMN public.proxy_pool_status.in_use IS 'Held by a worker (is_in_use), blocked or not.';
COMMENT ON COLUMN public.proxy_pool_status.blocked IS 'Not held and blocked: cooling down or quarantined.';
COMMENT ON COLUMN public.proxy_pool_status.free IS 'Neither held nor blocked: what acquire_proxy can hand out.';
COMMENT ON COLUMN public.proxy_pool_status.stuck IS
    'Held but eligible for release right now, by the sweeper''s own rules (count of stuck_proxies).';
