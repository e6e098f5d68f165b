-- The heartbeat triggers get their renewal slot, now and whenever lease_duration is set
-- (place_heartbeat_triggers).
REVOKE EXECUTE ON FUNCTION public.place_heartbeat_triggers() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers() FROM PUBLIC;

CREATE TRIGGER place_heartbeat_triggers
    AFTER UPDATE OF lease_duration ON public.proxy_lease_settings
    FOR EACH ROW
    WHEN (OLD.lease_duration IS DISTINCT FROM NEW.lease_duration)
    EXECUTE FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers();

COMMENT ON TRIGGER place_heartbeat_triggers ON public.proxy_lease_settings IS
    'proxy-leases: a new lease_duration rewrites the heartbeat triggers on the task tables with a renewal '
    'slot of a tenth of it (place_heartbeat_triggers).';

SELECT public.place_heartbeat_triggers();
