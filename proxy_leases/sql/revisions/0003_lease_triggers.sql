-- Attach the lease to the writes the fleet already makes.

CREATE TRIGGER keep_lease_consistent
    BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until ON public.proxies
    FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

CREATE TRIGGER release_proxy_on_task_exit
    AFTER UPDATE OF status, worker_id ON public.catalog_tasks
    FOR EACH ROW
    WHEN (OLD.status = 'processing' AND OLD.worker_id IS NOT NULL
          AND (NEW.status IS DISTINCT FROM 'processing' OR NEW.worker_id IS DISTINCT FROM OLD.worker_id))
    EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

CREATE TRIGGER release_proxy_on_task_delete
    AFTER DELETE ON public.catalog_tasks
    FOR EACH ROW
    WHEN (OLD.status = 'processing' AND OLD.worker_id IS NOT NULL)
    EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

CREATE TRIGGER renew_proxy_lease_on_heartbeat
    AFTER UPDATE OF heartbeat_at ON public.catalog_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'processing' AND NEW.worker_id IS NOT NULL
          AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at)
    EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

CREATE TRIGGER release_proxy_on_task_exit
    AFTER UPDATE OF status, worker_id ON public.object_tasks
    FOR EACH ROW
    WHEN (OLD.status = 'processing' AND OLD.worker_id IS NOT NULL
          AND (NEW.status IS DISTINCT FROM 'processing' OR NEW.worker_id IS DISTINCT FROM OLD.worker_id))
    EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

CREATE TRIGGER release_proxy_on_task_delete
    AFTER DELETE ON public.object_tasks
    FOR EACH ROW
    WHEN (OLD.status = 'processing' AND OLD.worker_id IS NOT NULL)
    EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

CREATE TRIGGER renew_proxy_lease_on_heartbeat
    AFTER UPDATE OF heartbeat_at ON public.object_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'processing' AND NEW.worker_id IS NOT NULL
          AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at)
    EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS
    'proxy-leases: a new holder gets a lease; any release clears it (tg_proxies__keep_lease_consistent).';
COMMENT ON TRIGGER release_proxy_on_task_exit ON public.catalog_tasks IS
    'proxy-leases: frees the old worker''s proxy when the task leaves processing.';
COMMENT ON TRIGGER release_proxy_on_task_delete ON public.catalog_tasks IS
    'proxy-leases: frees the old worker''s proxy when a task in processing is deleted.';
COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.catalog_tasks IS
    'proxy-leases: a heartbeat moving forward renews the worker''s proxy lease.';
COMMENT ON TRIGGER release_proxy_on_task_exit ON public.object_tasks IS
    'proxy-leases: frees the old worker''s proxy when the task leaves processing.';
COMMENT ON TRIGGER release_proxy_on_task_delete ON public.object_tasks IS
    'proxy-leases: frees the old worker''s proxy when a task in processing is deleted.';
COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.object_tasks IS
    'proxy-leases: a heartbeat moving forward renews the worker''s proxy lease.';
