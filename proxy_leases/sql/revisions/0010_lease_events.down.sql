-- Back to 0009: the audit trail, its triggers, the views and renewed_at go (with every event: take
-- a copy first if you need them); the functions this revision redefined are put back by the
-- revision from their earlier files after this. The revision runs 0006_lease_api_locks.sql first.

DROP TRIGGER record_lease_events_on_truncate ON public.proxies;
DROP TRIGGER record_lease_events_on_delete ON public.proxies;
DROP TRIGGER record_lease_events_on_insert ON public.proxies;
DROP TRIGGER record_lease_events ON public.proxies;
DROP TRIGGER keep_lease_consistent ON public.proxies;

CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until, lease_token, released_at,
                               strike_count, is_blocked, blocked_at, blocked_until, blocked_reason
    ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease and a fencing token; any release clears them; strikes, '
    'quarantine and block details are kept consistent (tg_proxies__keep_lease_consistent).';

DROP VIEW public.proxy_recovery_by_hour;
DROP VIEW public.proxy_recoveries;
DROP VIEW public.proxy_pool_by_container;
DROP VIEW public.proxy_pool_status;

DROP FUNCTION public.prune_lease_events(integer);
DROP FUNCTION public.summarize_proxy_holders(text[]);
DROP FUNCTION public.tg_proxies__record_lease_events_on_truncate();
DROP FUNCTION public.tg_proxies__record_lease_events();

DROP TABLE public.proxy_lease_events;
DROP FUNCTION public.tg_proxy_lease_events__append_only();

ALTER TABLE public.proxies DROP COLUMN renewed_at;
ALTER TABLE public.proxy_lease_settings DROP COLUMN event_retention;
