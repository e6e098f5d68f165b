-- Fleets describe a proxy in their own columns: an address, or a host and a port. acquire_proxy
-- returns what this function makes of the row. Replace it (same signature) if yours differs, e.g.
--   CREATE OR REPLACE FUNCTION proxy_address(proxy proxies) RETURNS text LANGUAGE sql STABLE
--   AS $f$ SELECT format('http://%s:%s@%s:%s', proxy.login, proxy.password, proxy.host, proxy.port) $f$;

CREATE OR REPLACE FUNCTION public.proxy_address(proxy public.proxies)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT coalesce(to_jsonb(proxy) ->> 'address',
                    nullif(concat_ws(':', to_jsonb(proxy) ->> 'host', to_jsonb(proxy) ->> 'port'), ''))
$$;

COMMENT ON FUNCTION public.proxy_address(public.proxies) IS
    'How a worker reaches the proxy, as acquire_proxy returns it: the row''s address column, else '
    'host:port, else NULL. Replace it to suit the fleet''s columns.';
