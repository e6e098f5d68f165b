-- Remove the lease: triggers, functions, the rule, the columns and the settings. Proxies held
-- now stay held (is_in_use, worker_id); only the lease around them goes. The revision runs
-- 0003_lease_locks.sql first.

DROP TRIGGER renew_proxy_lease_on_heartbeat ON public.object_tasks;
DROP TRIGGER release_proxy_on_task_delete ON public.object_tasks;
DROP TRIGGER release_proxy_on_task_exit ON public.object_tasks;
DROP TRIGGER renew_proxy_lease_on_heartbeat ON public.catalog_tasks;
DROP TRIGGER release_proxy_on_task_delete ON public.catalog_tasks;
DROP TRIGGER release_proxy_on_task_exit ON public.catalog_tasks;
DROP TRIGGER keep_lease_consistent ON public.proxies;

DROP FUNCTION public.release_container_proxies(text);
DROP FUNCTION public.release_stuck_proxies();
DROP VIEW public.stuck_proxies;
DROP FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();
DROP FUNCTION public.tg_tasks__release_proxy_on_task_exit();
DROP FUNCTION public.tg_proxies__keep_lease_consistent();
DROP FUNCTION public.worker_has_processing_task(text);

ALTER TABLE public.proxies DROP CONSTRAINT proxies_lease_consistent;
ALTER TABLE public.proxies DROP COLUMN leased_until, DROP COLUMN leased_at;

DROP TABLE public.proxy_lease_settings;
DROP FUNCTION public.tg_proxy_lease_settings__keep_the_row();
