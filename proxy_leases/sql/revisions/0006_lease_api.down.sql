-- Back to 0005: the lease API, its columns and triggers go; the functions it redefined are put
-- back by the revision from their v1 files after this. Held proxies stay held, with their lease;
-- blocked proxies stay blocked. The revision runs 0006_lease_api_locks.sql first.

DROP TRIGGER announce_proxy_inserted ON public.proxies;
DROP TRIGGER announce_proxy_available ON public.proxies;
DROP TRIGGER keep_lease_consistent ON public.proxies;

CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease; any release clears it (tg_proxies__keep_lease_consistent).';

DROP PROCEDURE public.run_lease_maintenance(integer, integer, integer);
DROP FUNCTION public.requeue_stale_tasks(interval);
DROP FUNCTION public.unblock_cooled_down_proxies();
DROP FUNCTION public.unblock_proxy(bigint);
DROP FUNCTION public.block_proxy(bigint, bigint, text, interval);
DROP FUNCTION public.release_proxy(bigint, bigint);
DROP FUNCTION public.renew_proxy_lease(bigint, bigint, interval);
DROP FUNCTION public.acquire_proxy(text, interval);
DROP FUNCTION public.proxy_address(public.proxies);
DROP FUNCTION public.tg_proxies__announce_inserted();
DROP FUNCTION public.tg_proxies__announce_available();

ALTER TABLE public.proxies
    DROP CONSTRAINT proxies_block_consistent,
    DROP CONSTRAINT proxies_lease_token_consistent,
    DROP COLUMN blocked_reason,
    DROP COLUMN blocked_until,
    DROP COLUMN blocked_at,
    DROP COLUMN strike_count,
    DROP COLUMN released_at,
    DROP COLUMN lease_token;

DROP SEQUENCE public.proxy_lease_token_seq;

REVOKE SELECT ON public.proxy_lease_settings FROM PUBLIC;

ALTER TABLE public.proxy_lease_settings
    DROP COLUMN quarantine_after_strikes,
    DROP COLUMN heartbeat_timeout;
