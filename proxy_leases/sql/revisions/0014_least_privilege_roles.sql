-- Two roles for the fleet, so that no worker needs the right to write proxies (0014_least_privilege):
--   proxy_leases_worker    calls the lease API (acquire, renew, release, block), reads the status
--                          views and claims and updates tasks;
--   proxy_leases_operator  does all that, and runs the clean-ups and reads the audit trail.
-- Give them to login roles: GRANT proxy_leases_worker TO scraper;
--
-- Roles belong to the server, not to one database: a second fleet database on the same server
-- finds them already there and only grants them its own objects. Creating them needs CREATEROLE;
-- a database administrator may create them beforehand instead, and the upgrade uses them as they are.
-- The comment marks the ones this revision created: only those may its downgrade drop.

DO $create_roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['proxy_leases_worker', 'proxy_leases_operator'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = v_role);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role % does not exist and % may not create it', v_role, current_user
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = '0014_least_privilege grants the lease API to proxy_leases_worker and the clean-ups '
                               'to proxy_leases_operator.',
                      HINT = 'As a superuser or a role with CREATEROLE, run once per server: '
                             'CREATE ROLE proxy_leases_worker NOLOGIN; CREATE ROLE proxy_leases_operator NOLOGIN; '
                             'then run the upgrade again.';
        END;
        EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, CASE v_role
            WHEN 'proxy_leases_worker' THEN
                'proxy-leases: may call acquire_proxy, renew_proxy_lease, release_proxy and block_proxy, read '
                'proxy_pool_status, proxy_pool_by_container and stuck_proxies, and claim and update tasks; may '
                'not write proxies or the audit trail. Created by revision 0014_least_privilege.'
            ELSE
                'proxy-leases: what proxy_leases_worker may, and the clean-ups (release_stuck_proxies, '
                'release_container_proxies, requeue_stale_tasks, unblock_proxy, unblock_cooled_down_proxies, '
                'prune_lease_events, run_lease_maintenance), and reading proxies and the audit trail. '
                'Created by revision 0014_least_privilege.'
            END);
    END LOOP;
END
$create_roles$;
