-- "This worker is alive by its tasks", for one worker: two lookups in the partial indexes of the
-- tasks in processing. Any role may ask it, without rights on the task tables (it runs as its owner,
-- with search_path pg_catalog, pg_temp, as since 0014_least_privilege: README, "Roles and rights").
--
-- v5 (0020_task_exit_inline_rule): the body is unchanged from v2; only the comment changes. Nothing of
-- proxy-leases calls it any more: stuck_proxies (since its v2) and the release trigger (since its v6)
-- write the same rule out, because a LANGUAGE sql function that runs as its owner cannot be inlined
-- and is planned again in every transaction that calls it. Keep the three the same;
-- tests/behaviour/test_sweeper.py and test_release_trigger.py check that they agree.

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
    'NULL worker ids in the task tables never match (no NOT IN pitfall). The release trigger and '
    'stuck_proxies write the same rule out, for one worker and for all held proxies at once. Runs as its '
    'owner, so any role may ask about a worker without rights on the task tables.';
