-- Every lease has an end no further ahead than longest_lease: a lease of 'infinity', or of the year
-- 3000, hid its proxy from every sweep (and from acquire_proxy's take-over) for ever. The setting is
-- checked by tg_proxy_lease_settings__reject_bad_values (v4), and enforced on every write to proxies
-- by tg_proxies__keep_lease_consistent (v6). It is at least an hour, so that the trigger reads no
-- setting for a lease ending within the hour: the fleet's own grants and renewals (a lease_duration
-- of minutes) stay as cheap as before. A constant default adds the column without rewriting the
-- table; a fleet whose lease_duration is longer than that default gets its lease_duration instead,
-- so that no lease it grants today is refused after the upgrade. The ALTER ... TYPE with USING sets
-- that in the one row under the lock this revision holds, without an UPDATE (which would fire the
-- settings' triggers).

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN longest_lease interval NOT NULL DEFAULT '1 day';
ALTER TABLE public.proxy_lease_settings
    ALTER COLUMN longest_lease TYPE interval USING greatest(longest_lease, lease_duration);
ALTER TABLE public.proxy_lease_settings
    ADD CONSTRAINT proxy_lease_settings_longest_lease_covers_lease_duration
        CHECK (longest_lease >= lease_duration AND longest_lease >= interval '1 hour');

COMMENT ON COLUMN public.proxy_lease_settings.longest_lease IS
    'The furthest ahead a lease may end: a grant, a renewal or a direct UPDATE of proxies.leased_until beyond '
    'now + longest_lease, or an infinite one, is refused (acquire_proxy and renew_proxy_lease: 22023; any other '
    'write: 23514); a lease already longer when the setting is lowered keeps its end. At least lease_duration and '
    'an hour, at most 100 years. Bounds how long a dead worker''s proxy can stay held when nothing else frees it.';
