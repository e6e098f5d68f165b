-- The audit trigger runs as its owner (SECURITY DEFINER): the fleet's roles write proxies, never the
-- audit trail itself. Nobody may call it directly (see 0003_lease_grants.sql).
-- The views and the trail name workers and proxies, and a view reads with its owner's rights: like
-- stuck_proxies, they are granted to nobody. Grant SELECT to your monitoring role (README).

REVOKE EXECUTE ON FUNCTION public.tg_proxies__record_lease_events() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_proxies__record_lease_events_on_truncate() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_proxy_lease_events__append_only() FROM PUBLIC;
REVOKE ALL ON public.proxy_lease_events FROM PUBLIC;
-- prune_lease_events runs as its owner too: the maintenance calls it as the owner; another role
-- that runs the maintenance needs EXECUTE granted (README), so that not everyone can delete in bulk.
REVOKE EXECUTE ON FUNCTION public.prune_lease_events(integer) FROM PUBLIC;
