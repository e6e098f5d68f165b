-- Fleets describe a proxy in their own columns: an address, or a host and a port. acquire_proxy
-- returns what this function makes of the row. Replace it (same signature) if yours differs, e.g.
--   CREATE OR REPLACE FUNCTION proxy_address(proxy proxies) RETURNS text LANGUAGE sql STABLE
--   AS $f$ SELECT format('http://%s:%s@%s:%s', proxy.login, proxy.password, proxy.host, proxy.port) $f$;
-- A single expression with no SET clause, so that PostgreSQL inlines it into acquire_proxy; it
-- calls only built-in functions, which are found in pg_catalog whatever the caller's search_path.

CREATE OR REPLACE FUNCTION public.proxy_address(proxy public.proxies)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT COALESCE(pg_catalog.to_jsonb(proxy) ->> 'address',
                    NULLIF(pg_catalog.concat_ws(':', pg_catalog.to_jsonb(proxy) ->> 'host',
                                                     pg_catalog.to_jsonb(proxy) ->> 'port'), ''))
$$;

COMMENT ON FUNCTION public.proxy_address(public.proxies) IS
    'How a worker reaches the proxy, as acquire_proxy returns it: the row''s address column, else '
    'host:port, else NULL. Replace it to suit the fleet''s columns.';
