-- A worker that found the pool empty LISTENs instead of polling. Notifications are sent at commit,
-- and only for proxies someone can take: a proxy released and blocked in the same statement is
-- announced when it is unblocked. PostgreSQL folds identical notifications of one transaction, so a
-- proxy is announced once per transaction however many times it is written.

CREATE OR REPLACE FUNCTION public.tg_proxies__announce_available()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_notify('proxy_available', NEW.id::text);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__announce_available() IS
    'Trigger on proxies: NOTIFY proxy_available, payload the proxy id, when a proxy becomes free and '
    'unblocked (released, unblocked, or inserted free).';
