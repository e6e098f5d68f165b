DROP TRIGGER reject_bad_values ON public.proxy_lease_settings;
DROP FUNCTION public.tg_proxy_lease_settings__reject_bad_values();
DROP FUNCTION public.interval_has_negative_part(interval);
