-- Drop the pool indexes without blocking writes to proxies (no lock_timeout, as in the upgrade).
SELECT set_config('proxy_leases.saved_lock_timeout', current_setting('lock_timeout'), false);
SET lock_timeout = 0;

DROP INDEX CONCURRENTLY IF EXISTS public.proxies_cooldown_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.proxies_free_rotation_idx;

SELECT set_config('lock_timeout', current_setting('proxy_leases.saved_lock_timeout'), false);
