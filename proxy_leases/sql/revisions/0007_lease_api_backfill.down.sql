-- Back to the state 0006 left: the same rules, not yet validated (catalog only). Tokens stay.

ALTER TABLE public.proxies
    DROP CONSTRAINT proxies_lease_token_consistent,
    DROP CONSTRAINT proxies_block_consistent;

ALTER TABLE public.proxies
    ADD CONSTRAINT proxies_lease_token_consistent CHECK (is_in_use = (lease_token IS NOT NULL)) NOT VALID,
    ADD CONSTRAINT proxies_block_consistent CHECK (
        is_blocked IS TRUE OR (blocked_at IS NULL AND blocked_until IS NULL AND blocked_reason IS NULL)
    ) NOT VALID;

COMMENT ON CONSTRAINT proxies_lease_token_consistent ON public.proxies IS
    'A held proxy has a fencing token; a free one has none.';
COMMENT ON CONSTRAINT proxies_block_consistent ON public.proxies IS
    'Block details (since, until, reason) exist only while the proxy is blocked.';
