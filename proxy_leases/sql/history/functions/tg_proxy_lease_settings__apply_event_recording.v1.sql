-- The audit trail costs a busy pool up to a quarter of its grants a second (README, "Measured"):
-- an operator who needs them back turns recording off with
--   UPDATE proxy_lease_settings SET record_lease_events = false;
-- and this trigger disables the audit triggers on proxies for every session, so that a write no
-- longer pays even the trigger call. The truncate guard stays on.
--
-- ALTER TABLE needs the owner of proxies, hence SECURITY DEFINER; only roles that may UPDATE the
-- settings (the owner, unless granted) can fire it. It takes SHARE ROW EXCLUSIVE on proxies, which
-- waits for writes in progress and holds the next ones until the change commits: at most 5 s of
-- waiting, then the change fails and nothing is switched.

CREATE OR REPLACE FUNCTION public.tg_proxy_lease_settings__apply_event_recording()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET lock_timeout = '5s'
AS $$
BEGIN
    BEGIN
        IF NEW.record_lease_events THEN
            ALTER TABLE public.proxies
                ENABLE TRIGGER record_lease_events,
                ENABLE TRIGGER record_lease_events_on_insert,
                ENABLE TRIGGER record_lease_events_on_delete;
        ELSE
            ALTER TABLE public.proxies
                DISABLE TRIGGER record_lease_events,
                DISABLE TRIGGER record_lease_events_on_insert,
                DISABLE TRIGGER record_lease_events_on_delete;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'could not switch the recording of proxy_lease_events %: proxies stayed locked for 5 s',
                        CASE WHEN NEW.record_lease_events THEN 'on' ELSE 'off' END
            USING ERRCODE = 'lock_not_available',
                  HINT = 'A long transaction is writing proxies; see pg_stat_activity, then retry. Nothing was changed.';
    END;
    RAISE LOG 'proxy_lease_events: recording of grants, releases, blocks and unblocks turned % by %',
              CASE WHEN NEW.record_lease_events THEN 'on' ELSE 'off' END, session_user;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__apply_event_recording() IS
    'Trigger on proxy_lease_settings: enables or disables the audit triggers on proxies when '
    'record_lease_events changes. Waits at most 5 s for the lock on proxies, then raises 55P03 and '
    'changes nothing. Logs who switched it.';
