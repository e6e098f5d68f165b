-- Proxies held since before 0006 get a fencing token. This commits on its own, before the rules
-- are validated (0007_lease_api_validate.sql): its row locks must not last through the validation
-- scans, or the task triggers would skip those proxies meanwhile and leave them to the sweeper.

UPDATE public.proxies
   SET lease_token = nextval('public.proxy_lease_token_seq')
 WHERE is_in_use AND lease_token IS NULL;
