-- A bad setting is refused by name, with a hint, before the CHECK constraints see it (see
-- tg_proxy_lease_settings__reject_bad_values). The constraints stay: they hold whatever the trigger says.

CREATE TRIGGER reject_bad_values
    BEFORE INSERT OR UPDATE ON public.proxy_lease_settings
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxy_lease_settings__reject_bad_values();

COMMENT ON TRIGGER reject_bad_values ON public.proxy_lease_settings IS
    'proxy-leases: names the setting a bad value was given for, and says what to do instead.';

REVOKE EXECUTE ON FUNCTION public.tg_proxy_lease_settings__reject_bad_values() FROM PUBLIC;
