DROP TRIGGER reject_bad_values ON public.proxy_lease_settings;
DROP FUNCTION public.tg_proxy_lease_settings__reject_bad_values();
