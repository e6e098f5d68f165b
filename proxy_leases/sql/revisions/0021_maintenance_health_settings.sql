-- What proxy_leases_health measures against: how often the maintenance is scheduled, and the two
-- floors of the pool that an operator sets for the fleet (NULL switches a check off). Constant
-- defaults add the columns without rewriting the one row; tg_proxy_lease_settings__reject_bad_values
-- (v3) refuses a bad value by name, and the CHECK constraints stay as the last word.

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN maintenance_period interval NOT NULL DEFAULT '1 minute'
        CONSTRAINT proxy_lease_settings_maintenance_period_positive CHECK (maintenance_period > interval '0'),
    ADD COLUMN free_pool_floor integer DEFAULT 20
        CONSTRAINT proxy_lease_settings_free_pool_floor_not_negative CHECK (free_pool_floor >= 0),
    ADD COLUMN quarantined_share_limit numeric DEFAULT 0.2
        CONSTRAINT proxy_lease_settings_quarantined_share_limit_is_a_share
            CHECK (quarantined_share_limit > 0 AND quarantined_share_limit <= 1);

COMMENT ON COLUMN public.proxy_lease_settings.maintenance_period IS
    'How often the scheduler calls run_lease_maintenance() (pg_cron''s job: every minute). proxy_leases_health '
    'reports the maintenance late when no run started within two periods and 30 seconds. Set it when you '
    'change the schedule.';
COMMENT ON COLUMN public.proxy_lease_settings.free_pool_floor IS
    'proxy_leases_health reports the pool low when fewer proxies than this are free (neither held nor '
    'blocked). 20 suits a pool of 100 (the incident''s healthy pool had 29 free, its worst 13); NULL '
    'switches the check off.';
COMMENT ON COLUMN public.proxy_lease_settings.quarantined_share_limit IS
    'proxy_leases_health reports too many quarantined proxies (blocked by the strike rule until '
    'unblock_proxy) when their share of the pool reaches this. 0.2 is a fifth; NULL switches the check off.';
