-- Drop the proxy-leases indexes without blocking writes to the fleet's tables.
DROP INDEX CONCURRENTLY IF EXISTS public.proxies_held_worker_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.object_tasks_processing_worker_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.catalog_tasks_processing_worker_idx;
