-- The trigger as 0010_lease_events made it, then the columns it no longer watches can go.
DROP TRIGGER keep_lease_consistent ON public.proxies;
CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until, lease_token, released_at,
                               strike_count, is_blocked, blocked_at, blocked_until, blocked_reason, renewed_at
    ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease and a fencing token; renewals stamp renewed_at; any release '
    'clears them; strikes, quarantine and block details are kept consistent '
    '(tg_proxies__keep_lease_consistent).';

ALTER TABLE public.proxies
    DROP COLUMN released_lease_token,
    DROP COLUMN blocked_lease_token;
