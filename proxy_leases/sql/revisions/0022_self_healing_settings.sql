-- Every lease has an end no further ahead than longest_lease: a lease of 'infinity', or of the year
-- 3000, hid its proxy from every sweep (and from acquire_proxy's reclaim) for ever. The setting is
-- checked against lease_duration by tg_proxy_lease_settings__reject_bad_values (v4), and enforced on
-- every write to proxies by tg_proxies__keep_lease_consistent (v6). It is at least an hour, so that
-- the trigger needs no read of the settings for a lease ending within the hour: every grant and
-- renewal of the fleet's own (a lease_duration of minutes) stays as cheap as before. A constant
-- default adds the column without rewriting the one row.

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN longest_lease interval NOT NULL DEFAULT '1 day'
        CONSTRAINT proxy_lease_settings_longest_lease_covers_lease_duration
            CHECK (longest_lease >= lease_duration AND longest_lease >= interval '1 hour');

COMMENT ON COLUMN public.proxy_lease_settings.longest_lease IS
    'The furthest ahead a lease may end: a grant, a renewal or a direct UPDATE of proxies.leased_until beyond '
    'now + longest_lease is refused (acquire_proxy: 22023; any other write: 23514). At least lease_duration '
    'and an hour, at most 100 years. Bounds how long a dead worker''s proxy can stay held when nothing else frees it.';
