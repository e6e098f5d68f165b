-- Back to 0020_task_exit_inline_rule: the health view and the maintenance's trace go, the settings
-- lose their health columns, and the previous settings check (0017_finite_intervals's) and
-- maintenance procedure (0010_lease_events's) come back, and prune_lease_events v2 (0014's) with
-- them: the downgrade runs their files again.
REVOKE SELECT ON public.proxy_pool_status, public.proxy_pool_by_container, public.stuck_proxies FROM pg_monitor;
REVOKE SELECT ON public.proxy_recovery_by_hour FROM pg_monitor;
DROP VIEW public.proxy_leases_health;
DROP VIEW public.proxy_lease_event_totals;
DROP TABLE public.proxy_lease_events_pruned;
DROP FUNCTION public.proxy_leases_installed_revision();
DROP FUNCTION public.proxy_leases_head_revision();
DROP TABLE public.proxy_lease_maintenance_runs;
ALTER TABLE public.proxy_lease_settings
    DROP COLUMN maintenance_period,
    DROP COLUMN free_pool_floor,
    DROP COLUMN quarantined_share_limit;
