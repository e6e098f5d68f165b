-- The proxies trigger now also guards the token, the strikes and the block details, so it must
-- fire when any of them is written; and a proxy that becomes available is announced.

DROP TRIGGER keep_lease_consistent ON public.proxies;

CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until, lease_token, released_at,
                               strike_count, is_blocked, blocked_at, blocked_until, blocked_reason
    ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

CREATE TRIGGER announce_proxy_available
    AFTER UPDATE ON public.proxies
    FOR EACH ROW
    WHEN (NEW.is_in_use IS FALSE AND NEW.is_blocked IS NOT TRUE
          AND (OLD.is_in_use IS NOT FALSE OR OLD.is_blocked IS TRUE))
    EXECUTE FUNCTION public.tg_proxies__announce_available();

CREATE TRIGGER announce_proxy_inserted
    AFTER INSERT ON public.proxies
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.tg_proxies__announce_inserted();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease and a fencing token; any release clears them; strikes, '
    'quarantine and block details are kept consistent (tg_proxies__keep_lease_consistent).';
COMMENT ON TRIGGER announce_proxy_available ON public.proxies IS
    'proxy-leases: NOTIFY proxy_available with the proxy id when it is released or unblocked '
    '(while fewer than 16 others are free).';
COMMENT ON TRIGGER announce_proxy_inserted ON public.proxies IS
    'proxy-leases: one NOTIFY proxy_available per INSERT that adds free proxies to the pool.';
