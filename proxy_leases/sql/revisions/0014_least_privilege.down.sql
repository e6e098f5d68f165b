-- Back to 0013_event_recording's rights: the functions run with the caller's rights again (the
-- previous versions, run after this file, say SECURITY INVOKER by leaving it out), so EXECUTE goes
-- back to PUBLIC, and every other grant on them, which PUBLIC's makes redundant, goes (a role
-- that had EXECUTE revoked from PUBLIC before 0014 gets PUBLIC's back: a downgrade cannot tell).
-- The two roles lose exactly what this revision granted them, so grants of your own (the task
-- tables' result columns) stay; a role this revision created is dropped where nothing holds on to
-- it: no member, and no rights in this or another database.

DO $restore_rights$
DECLARE
    c_functions constant regprocedure[] := ARRAY[
        'public.acquire_proxy(text, interval)', 'public.renew_proxy_lease(bigint, bigint, interval)',
        'public.release_proxy(bigint, bigint)', 'public.block_proxy(bigint, bigint, text, interval)',
        'public.unblock_proxy(bigint)', 'public.unblock_cooled_down_proxies()', 'public.release_stuck_proxies()',
        'public.release_container_proxies(text)', 'public.requeue_stale_tasks(interval)']::regprocedure[];
    v_function regprocedure;
    v_grantee  text;
BEGIN
    FOREACH v_function IN ARRAY c_functions LOOP
        FOR v_grantee IN
            SELECT DISTINCT quote_ident(r.rolname)
              FROM pg_catalog.pg_proc p
             CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
              JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
             WHERE p.oid = v_function AND a.grantee <> p.proowner
        LOOP
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s', v_function, v_grantee);
        END LOOP;
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', v_function);
    END LOOP;
END
$restore_rights$;

DO $drop_roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['proxy_leases_worker', 'proxy_leases_operator'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = v_role);
        EXECUTE format('REVOKE SELECT ON public.proxy_pool_status, public.proxy_pool_by_container, '
                       'public.stuck_proxies, public.proxies, public.proxy_lease_events, public.proxy_recoveries, '
                       'public.proxy_recovery_by_hour FROM %I', v_role);
        EXECUTE format('REVOKE SELECT, UPDATE (status, worker_id, heartbeat_at) ON public.catalog_tasks, '
                       'public.object_tasks FROM %I', v_role);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION public.prune_lease_events(integer) FROM %I', v_role);
        EXECUTE format('REVOKE EXECUTE ON PROCEDURE public.run_lease_maintenance(integer, integer, integer) FROM %I',
                       v_role);
        CONTINUE WHEN coalesce(pg_catalog.shobj_description(v_role::regrole, 'pg_authid'), '')
                      NOT LIKE '%Created by revision 0014_least_privilege.'
                  OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.roleid = v_role::regrole);
        BEGIN
            EXECUTE format('DROP ROLE %I', v_role);
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            RAISE NOTICE 'proxy-leases: role % kept: %', v_role, SQLERRM;
        END;
    END LOOP;
END
$drop_roles$;
