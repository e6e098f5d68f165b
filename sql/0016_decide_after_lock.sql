-- The fencing token of the grant that ended last, kept while the proxy is free (see
-- tg_proxies__keep_lease_consistent v5): block_proxy records a ban from a worker whose lease ended
-- before its call only if nobody was granted the proxy since. Nullable, no default: adding it
-- rewrites nothing.

ALTER TABLE public.proxies ADD COLUMN released_lease_token bigint;

COMMENT ON COLUMN public.proxies.released_lease_token IS
    'proxy-leases: while the proxy is free, the lease_token of the grant that ended last (NULL before '
    'any release since 0016, and while held). Kept by a trigger; block_proxy reads it.';
