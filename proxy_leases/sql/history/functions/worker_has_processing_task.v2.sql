-- The one definition of "this worker is alive by its tasks", shared by the release trigger and the
-- sweeper (through stuck_proxies). Each call is two lookups in partial indexes. PostgreSQL does not
-- inline a function with sub-selects, so it costs a function call per held proxy in a sweep.
--
-- v2 runs as its owner: a view reads tables with its owner's rights but calls functions with the
-- reader's, so a monitoring role granted only the status views (which count stuck_proxies) was
-- refused the task tables. The answer is one boolean about one worker; the tasks stay unreadable.
-- Running as owner costs about 1 microsecond more per call (2,000 held proxies: about 2 ms).

CREATE OR REPLACE FUNCTION public.worker_has_processing_task(worker_id text)
RETURNS boolean
LANGUAGE sql
STABLE
PARALLEL SAFE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT FROM public.catalog_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
        OR EXISTS (SELECT FROM public.object_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
$$;

COMMENT ON FUNCTION public.worker_has_processing_task(text) IS
    'True when the worker has a task in processing in catalog_tasks or object_tasks. '
    'NULL worker ids in the task tables never match (no NOT IN pitfall). Runs as its owner, so the '
    'views that count stuck proxies can be granted without the task tables.';
