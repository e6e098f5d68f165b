-- The proxies trigger now also stamps renewed_at, so it must fire when that is written too; and
-- every change of a grant or a block is recorded. The audit triggers fire only for rows whose grant
-- (lease_token) or block changed: a renewal, the write every heartbeat makes, never calls them.

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

CREATE TRIGGER record_lease_events
    AFTER UPDATE ON public.proxies
    FOR EACH ROW
    WHEN (OLD.lease_token IS DISTINCT FROM NEW.lease_token
          OR (OLD.is_blocked IS TRUE) <> (NEW.is_blocked IS TRUE)
          OR (NEW.is_blocked IS TRUE AND (OLD.blocked_reason IS DISTINCT FROM NEW.blocked_reason
                                          OR OLD.blocked_until IS DISTINCT FROM NEW.blocked_until)))
    EXECUTE FUNCTION public.tg_proxies__record_lease_events();

CREATE TRIGGER record_lease_events_on_insert
    AFTER INSERT ON public.proxies
    FOR EACH ROW
    WHEN (NEW.lease_token IS NOT NULL OR NEW.is_blocked IS TRUE)
    EXECUTE FUNCTION public.tg_proxies__record_lease_events();

CREATE TRIGGER record_lease_events_on_delete
    AFTER DELETE ON public.proxies
    FOR EACH ROW
    WHEN (OLD.lease_token IS NOT NULL)
    EXECUTE FUNCTION public.tg_proxies__record_lease_events();

CREATE TRIGGER record_lease_events_on_truncate
    BEFORE TRUNCATE ON public.proxies
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.tg_proxies__record_lease_events_on_truncate();

COMMENT ON TRIGGER record_lease_events ON public.proxies IS
    'proxy-leases: appends to proxy_lease_events when a grant begins or ends, or a block begins, is replaced or ends '
    '(tg_proxies__record_lease_events).';
COMMENT ON TRIGGER record_lease_events_on_insert ON public.proxies IS
    'proxy-leases: a proxy inserted held or blocked is recorded in proxy_lease_events.';
COMMENT ON TRIGGER record_lease_events_on_delete ON public.proxies IS
    'proxy-leases: a held proxy deleted is recorded as released (proxy_deleted) in proxy_lease_events.';
COMMENT ON TRIGGER record_lease_events_on_truncate ON public.proxies IS
    'proxy-leases: TRUNCATE proxies records every held proxy as released (proxy_deleted) in proxy_lease_events.';
