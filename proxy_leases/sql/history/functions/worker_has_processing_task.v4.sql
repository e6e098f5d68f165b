-- "This worker is alive by its tasks", for one worker: what the release trigger asks when a task
-- leaves processing. Each call is two lookups in partial indexes.
--
-- Since v2 of stuck_proxies the sweeper no longer calls it: that view writes the same rule out as
-- NOT EXISTS for every held proxy at once, because this function (running as its owner, with a
-- pinned search_path) cannot be inlined and cost a call per held proxy. Keep the two the same;
-- tests/test_sweeper.py checks that they agree. The body is unchanged from v2.
--
-- It still runs as its owner, as v2 did: any role may already ask it about a worker without rights
-- on the task tables. The answer is one boolean about one worker; the tasks stay unreadable.
--
-- Since 0014_least_privilege: search_path is pg_catalog, pg_temp, not empty: an empty search_path
-- still searches the caller's temporary schema first for tables and types, so a caller's own
-- pg_temp.text domain would run its CHECK as this function's owner. Listed last, pg_temp is never
-- reached, as every other name is qualified.

CREATE OR REPLACE FUNCTION public.worker_has_processing_task(worker_id text)
RETURNS boolean
LANGUAGE sql
STABLE
PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public.catalog_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
        OR EXISTS (SELECT FROM public.object_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
$$;

COMMENT ON FUNCTION public.worker_has_processing_task(text) IS
    'True when the worker has a task in processing in catalog_tasks or object_tasks. '
    'NULL worker ids in the task tables never match (no NOT IN pitfall). The release trigger asks it; '
    'stuck_proxies applies the same rule to all held proxies at once. Runs as its owner, so any role '
    'may ask about a worker without rights on the task tables.';
