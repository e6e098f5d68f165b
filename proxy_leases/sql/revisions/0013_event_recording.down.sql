-- Back to 0012: the audit trail always on, whatever the setting was.

DROP TRIGGER apply_event_recording ON public.proxy_lease_settings;
DROP FUNCTION public.tg_proxy_lease_settings__apply_event_recording();
ALTER TABLE public.proxies
    ENABLE TRIGGER record_lease_events,
    ENABLE TRIGGER record_lease_events_on_insert,
    ENABLE TRIGGER record_lease_events_on_delete;
ALTER TABLE public.proxy_lease_settings DROP COLUMN record_lease_events;
