-- What the lease API keeps on each proxy: the grant's fencing token, when the proxy was last
-- freed (the rotation order), the strikes that quarantine a bad proxy, and why and until when it
-- is blocked. Nullable columns and a constant default add no rewrite and no scan; the two rules
-- are added NOT VALID and validated by the next revision, which also gives held proxies a token.

CREATE SEQUENCE public.proxy_lease_token_seq AS bigint;

-- Tokens start at the microseconds since 1970: a downgrade drops the sequence, and a later upgrade
-- must not hand out again a token a worker may still hold from before. It would take more than a
-- million grants a second for the old tokens to catch up with the clock.
SELECT setval('public.proxy_lease_token_seq', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);

COMMENT ON SEQUENCE public.proxy_lease_token_seq IS
    'proxy-leases: fencing tokens. Every grant of a proxy takes the next value, so a later grant of the '
    'same proxy always carries a larger token than any earlier one. Starts at the install time in '
    'microseconds, so tokens keep growing across a downgrade and a new upgrade.';

ALTER TABLE public.proxies
    ADD COLUMN lease_token    bigint,
    ADD COLUMN released_at    timestamptz,
    ADD COLUMN strike_count   integer NOT NULL DEFAULT 0,
    ADD COLUMN blocked_at     timestamptz,
    ADD COLUMN blocked_until  timestamptz,
    ADD COLUMN blocked_reason text;

COMMENT ON COLUMN public.proxies.lease_token IS
    'The fencing token of the current grant; NULL when free. Renewing, releasing or blocking needs it: '
    'a worker whose grant ended (expired, swept, granted again) holds a token that no longer matches.';
COMMENT ON COLUMN public.proxies.released_at IS
    'When the proxy was last freed; NULL if never since proxy-leases was installed. acquire_proxy hands '
    'out the proxy free for the longest first.';
COMMENT ON COLUMN public.proxies.strike_count IS
    'Strikes in a row: reclaimed from a dead worker (sweep, container clean-up, task requeued) or blocked. '
    'A clean release sets it back to 0; reaching quarantine_after_strikes blocks the proxy for good.';
COMMENT ON COLUMN public.proxies.blocked_at IS 'When the proxy was blocked; NULL when not blocked.';
COMMENT ON COLUMN public.proxies.blocked_until IS
    'When a cooldown ends and the scheduled maintenance unblocks the proxy; NULL: blocked until '
    'unblock_proxy (or not blocked).';
COMMENT ON COLUMN public.proxies.blocked_reason IS 'Why the proxy is blocked, as given to block_proxy or by quarantine.';

ALTER TABLE public.proxies
    ADD CONSTRAINT proxies_lease_token_consistent CHECK (is_in_use = (lease_token IS NOT NULL)) NOT VALID,
    ADD CONSTRAINT proxies_block_consistent CHECK (
        is_blocked IS TRUE OR (blocked_at IS NULL AND blocked_until IS NULL AND blocked_reason IS NULL)
    ) NOT VALID;

COMMENT ON CONSTRAINT proxies_lease_token_consistent ON public.proxies IS
    'A held proxy has a fencing token; a free one has none.';
COMMENT ON CONSTRAINT proxies_block_consistent ON public.proxies IS
    'Block details (since, until, reason) exist only while the proxy is blocked.';

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN heartbeat_timeout interval NOT NULL DEFAULT '5 minutes'
        CONSTRAINT proxy_lease_settings_heartbeat_timeout_positive CHECK (heartbeat_timeout > interval '0'),
    ADD COLUMN quarantine_after_strikes integer DEFAULT 3
        CONSTRAINT proxy_lease_settings_quarantine_positive CHECK (quarantine_after_strikes > 0);

COMMENT ON COLUMN public.proxy_lease_settings.heartbeat_timeout IS
    'requeue_stale_tasks puts a task in processing back to pending once its heartbeat_at is this old '
    '(or NULL).';
COMMENT ON COLUMN public.proxy_lease_settings.quarantine_after_strikes IS
    'A proxy reclaimed from dead workers or blocked this many times in a row, with no clean release in '
    'between, is blocked until unblock_proxy. NULL: never quarantine.';
