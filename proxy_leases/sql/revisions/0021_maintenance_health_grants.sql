-- Monitoring reads the health, the pool and the trail's figures (counts by reason, recovery times by
-- hour; not the events, which name workers), and nothing else: pg_monitor (PostgreSQL's own role for
-- monitoring tools, which postgres_exporter's login role is usually given) and the operator.
-- The maintenance runs as its caller (a procedure that COMMITs cannot run as its owner), so the
-- operator, who may CALL it, may also write its trace.

REVOKE ALL ON public.proxy_lease_maintenance_runs, public.proxy_lease_events_pruned FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.proxy_leases_installed_revision() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.tg_proxy_lease_settings__reject_bad_values() FROM PUBLIC;

GRANT SELECT ON public.proxy_leases_health, public.proxy_lease_maintenance_runs, public.proxy_lease_event_totals,
                public.proxy_pool_status, public.proxy_pool_by_container, public.stuck_proxies,
                public.proxy_recovery_by_hour
    TO proxy_leases_operator, pg_monitor;
GRANT SELECT ON public.proxy_lease_events_pruned TO proxy_leases_operator;
GRANT EXECUTE ON FUNCTION public.proxy_leases_installed_revision() TO proxy_leases_operator, pg_monitor;
GRANT INSERT, UPDATE, DELETE ON public.proxy_lease_maintenance_runs TO proxy_leases_operator;
