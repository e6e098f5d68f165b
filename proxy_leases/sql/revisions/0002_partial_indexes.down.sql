-- Drop the proxy-leases indexes without blocking writes to the fleet's tables.
-- CONCURRENTLY waits for older transactions but blocks nobody meanwhile: no lock_timeout here.
SELECT set_config('proxy_leases.saved_lock_timeout', current_setting('lock_timeout'), false);
SET lock_timeout = 0;

DROP INDEX CONCURRENTLY IF EXISTS public.proxies_held_worker_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.object_tasks_processing_worker_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.catalog_tasks_processing_worker_idx;

SELECT set_config('lock_timeout', current_setting('proxy_leases.saved_lock_timeout'), false);
