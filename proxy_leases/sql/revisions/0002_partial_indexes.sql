-- The indexes that make every proxy-leases query follow the work (proxies held, tasks processing),
-- never the size of the tables.
--
-- Built CONCURRENTLY: on a live fleet the task tables are written by every heartbeat, and a plain
-- CREATE INDEX would block those writes for the whole build. Each statement runs on its own,
-- outside a transaction. An interrupted build leaves an INVALID index behind, so each index is
-- dropped first: running this file again always ends with valid indexes.
--
-- CONCURRENTLY waits for every older transaction to end, but blocks nobody meanwhile: the
-- migration's lock_timeout, meant for locks that stop the fleet, is lifted for this file.

SELECT set_config('proxy_leases.saved_lock_timeout', current_setting('lock_timeout'), false);
SET lock_timeout = 0;

DROP INDEX CONCURRENTLY IF EXISTS public.catalog_tasks_processing_worker_idx;
CREATE INDEX CONCURRENTLY catalog_tasks_processing_worker_idx
    ON public.catalog_tasks (worker_id) WHERE status = 'processing';
COMMENT ON INDEX public.catalog_tasks_processing_worker_idx IS
    'proxy-leases: which workers have a task in processing. Used by the release trigger and the sweeper.';

DROP INDEX CONCURRENTLY IF EXISTS public.object_tasks_processing_worker_idx;
CREATE INDEX CONCURRENTLY object_tasks_processing_worker_idx
    ON public.object_tasks (worker_id) WHERE status = 'processing';
COMMENT ON INDEX public.object_tasks_processing_worker_idx IS
    'proxy-leases: which workers have a task in processing. Used by the release trigger and the sweeper.';

DROP INDEX CONCURRENTLY IF EXISTS public.proxies_held_worker_idx;
CREATE INDEX CONCURRENTLY proxies_held_worker_idx
    ON public.proxies (worker_id) WHERE is_in_use OR worker_id IS NOT NULL;
COMMENT ON INDEX public.proxies_held_worker_idx IS
    'proxy-leases: the proxies held (or half-held, before the lease constraint is validated), by worker. '
    'The sweeper reads all of it, so a sweep costs what the proxies in use cost.';

SELECT set_config('lock_timeout', current_setting('proxy_leases.saved_lock_timeout'), false);
