-- Setting lease_duration moves the heartbeats' renewal slot with it (place_heartbeat_triggers).
-- SECURITY DEFINER: EXECUTE on place_heartbeat_triggers is granted to nobody but its owner; only
-- roles that may UPDATE the settings can fire this.
-- search_path pg_catalog, pg_temp, as since 0014_least_privilege (README, "Roles and rights").

CREATE OR REPLACE FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.place_heartbeat_triggers();
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers() IS
    'Trigger on proxy_lease_settings: when lease_duration is set, gives the heartbeat triggers the renewal '
    'slot of the new value (place_heartbeat_triggers).';
