-- Trigger functions are not for calling (see 0003_lease_grants.sql). The API functions run with
-- the caller's rights (SECURITY INVOKER): a role may acquire, renew, release or block a proxy
-- exactly when it may update proxies, and requeue tasks exactly when it may update the task
-- tables. They read the lease settings, which hold nothing secret, so everyone may read those.

REVOKE EXECUTE ON FUNCTION public.tg_proxies__announce_available() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_proxies__announce_inserted() FROM PUBLIC;
GRANT SELECT ON public.proxy_lease_settings TO PUBLIC;
