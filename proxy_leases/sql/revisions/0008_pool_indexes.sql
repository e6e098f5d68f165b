-- What acquire_proxy and the cooldowns read: the free, unblocked proxies in rotation order, and
-- the proxies waiting for a cooldown to end. Both partial, so they follow the pool that moves,
-- not the table. CONCURRENTLY, re-run safe and without lock_timeout, as in 0002_partial_indexes.sql.

SELECT set_config('proxy_leases.saved_lock_timeout', current_setting('lock_timeout'), false);
SET lock_timeout = 0;

DROP INDEX CONCURRENTLY IF EXISTS public.proxies_free_rotation_idx;
CREATE INDEX CONCURRENTLY proxies_free_rotation_idx
    ON public.proxies (released_at NULLS FIRST, id) WHERE NOT is_in_use AND is_blocked IS NOT TRUE;
COMMENT ON INDEX public.proxies_free_rotation_idx IS
    'proxy-leases: free, unblocked proxies, longest free first. acquire_proxy takes the first it can lock.';

DROP INDEX CONCURRENTLY IF EXISTS public.proxies_cooldown_idx;
CREATE INDEX CONCURRENTLY proxies_cooldown_idx
    ON public.proxies (blocked_until) WHERE blocked_until IS NOT NULL;
COMMENT ON INDEX public.proxies_cooldown_idx IS
    'proxy-leases: blocked proxies with a cooldown, by its end. Read by unblock_cooled_down_proxies.';

SELECT set_config('lock_timeout', current_setting('proxy_leases.saved_lock_timeout'), false);
