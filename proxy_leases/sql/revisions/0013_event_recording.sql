-- The switch for the audit trail: a setting like the others, applied by a trigger (see
-- tg_proxy_lease_settings__apply_event_recording). A constant default adds the column without
-- rewriting the one row.

ALTER TABLE public.proxy_lease_settings
    ADD COLUMN record_lease_events boolean NOT NULL DEFAULT true;

COMMENT ON COLUMN public.proxy_lease_settings.record_lease_events IS
    'Whether grants, releases, blocks and unblocks are written to proxy_lease_events. false disables '
    'the audit triggers on proxies for every session (waits at most 5 s for the lock on proxies): '
    'writes get cheaper, and the trail, proxy_recoveries and proxy_recovery_by_hour miss what happens '
    'meanwhile.';

CREATE TRIGGER apply_event_recording
    AFTER UPDATE OF record_lease_events ON public.proxy_lease_settings
    FOR EACH ROW
    WHEN (OLD.record_lease_events IS DISTINCT FROM NEW.record_lease_events)
    EXECUTE FUNCTION public.tg_proxy_lease_settings__apply_event_recording();

COMMENT ON TRIGGER apply_event_recording ON public.proxy_lease_settings IS
    'proxy-leases: turns the audit triggers on proxies on or off with record_lease_events.';

REVOKE EXECUTE ON FUNCTION public.tg_proxy_lease_settings__apply_event_recording() FROM PUBLIC;
