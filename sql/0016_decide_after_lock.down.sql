ALTER TABLE public.proxies DROP COLUMN released_lease_token;
