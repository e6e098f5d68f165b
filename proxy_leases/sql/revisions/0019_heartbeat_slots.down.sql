-- Every heartbeat of a task in processing runs the renewal trigger again, as 0003_lease_triggers made it.
DROP TRIGGER place_heartbeat_triggers ON public.proxy_lease_settings;
DROP FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers();
DROP FUNCTION public.place_heartbeat_triggers();

CREATE OR REPLACE TRIGGER renew_proxy_lease_on_heartbeat
    AFTER UPDATE OF heartbeat_at ON public.catalog_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'processing' AND NEW.worker_id IS NOT NULL
          AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at)
    EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

CREATE OR REPLACE TRIGGER renew_proxy_lease_on_heartbeat
    AFTER UPDATE OF heartbeat_at ON public.object_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'processing' AND NEW.worker_id IS NOT NULL
          AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at)
    EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.catalog_tasks IS
    'proxy-leases: a heartbeat moving forward renews the worker''s proxy lease.';
COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.object_tasks IS
    'proxy-leases: a heartbeat moving forward renews the worker''s proxy lease.';
