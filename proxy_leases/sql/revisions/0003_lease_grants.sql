-- The trigger functions run as their owner (SECURITY DEFINER), so the fleet's roles need no rights
-- on proxy-leases objects. Nobody else may call them: a role that could attach one to a table of
-- its own would run code as the owner. Triggers installed here fire whatever the firing role.

REVOKE EXECUTE ON FUNCTION public.tg_proxies__keep_lease_consistent() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_tasks__release_proxy_on_task_exit() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() FROM PUBLIC;
