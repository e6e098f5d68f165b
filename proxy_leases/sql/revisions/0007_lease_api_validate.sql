-- Validate 0006's rules. SHARE UPDATE EXCLUSIVE: the fleet reads and writes on during the scans.
-- Each statement commits on its own; running the file again after an interruption is harmless.

ALTER TABLE public.proxies VALIDATE CONSTRAINT proxies_lease_token_consistent;
ALTER TABLE public.proxies VALIDATE CONSTRAINT proxies_block_consistent;
