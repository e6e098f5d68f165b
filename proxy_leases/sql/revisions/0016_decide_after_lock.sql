-- Two tokens that let block_proxy record a ban from a worker whose grant ended before its call (see
-- block_proxy v5 and tg_proxies__keep_lease_consistent v5). Nullable, no default: adding them
-- rewrites nothing.

ALTER TABLE public.proxies
    ADD COLUMN released_lease_token bigint,
    ADD COLUMN blocked_lease_token  bigint;

COMMENT ON COLUMN public.proxies.released_lease_token IS
    'proxy-leases: while the proxy is free, the lease_token of the grant that ended last; NULL while held, '
    'after an unblock, and before the first release since 0016. Kept by a trigger; block_proxy reads it.';
COMMENT ON COLUMN public.proxies.blocked_lease_token IS
    'proxy-leases: while blocked, the lease_token named by the block_proxy call whose ban is in place (a '
    'retry of that call changes nothing); NULL for other blocks and while not blocked.';

-- The proxies trigger watches the two new columns too, so that no write sets them behind its back.
DROP TRIGGER keep_lease_consistent ON public.proxies;
CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until, lease_token, released_at,
                               strike_count, is_blocked, blocked_at, blocked_until, blocked_reason, renewed_at,
                               released_lease_token, blocked_lease_token
    ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease and a fencing token; renewals stamp renewed_at; any release '
    'clears them and keeps the ended token in released_lease_token; strikes, quarantine and block details '
    'are kept consistent (tg_proxies__keep_lease_consistent).';
