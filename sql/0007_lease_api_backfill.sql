-- Proxies held since before 0006 get a fencing token, then both of 0006's rules are validated.
-- Row locks only on the proxies held now (kept until commit, after the validation scans) and
-- SHARE UPDATE EXCLUSIVE for VALIDATE: the fleet reads and writes on.

UPDATE public.proxies
   SET lease_token = nextval('public.proxy_lease_token_seq')
 WHERE is_in_use AND lease_token IS NULL;

ALTER TABLE public.proxies VALIDATE CONSTRAINT proxies_lease_token_consistent;
ALTER TABLE public.proxies VALIDATE CONSTRAINT proxies_block_consistent;
