-- Who may do what, from 0014_least_privilege on. The functions that change proxies run as their
-- owner (SECURITY DEFINER), so EXECUTE on them is the whole right: it goes to the two roles, not to
-- PUBLIC. Before this revision they ran with the caller's rights, and any role that may update
-- proxies could call them; those roles keep that (below), so no worker of the live fleet loses its
-- API in the middle of an upgrade.

REVOKE EXECUTE ON FUNCTION public.acquire_proxy(text, interval),
                           public.renew_proxy_lease(bigint, bigint, interval),
                           public.release_proxy(bigint, bigint),
                           public.block_proxy(bigint, bigint, text, interval),
                           public.unblock_proxy(bigint),
                           public.unblock_cooled_down_proxies(),
                           public.release_stuck_proxies(),
                           public.release_container_proxies(text),
                           public.requeue_stale_tasks(interval)
    FROM PUBLIC;

-- The live fleet's roles keep what they could do: a role that may update proxies (the table or some
-- of its columns) could call every function above but requeue_stale_tasks, which needed UPDATE on
-- both task tables, as it still does. Each role that keeps something is named in a NOTICE; revoke
-- it once the role is a member of proxy_leases_worker (or _operator).
DO $keep_the_fleets_rights$
DECLARE
    c_proxy_functions constant text[] := ARRAY[
        'public.acquire_proxy(text, interval)', 'public.renew_proxy_lease(bigint, bigint, interval)',
        'public.release_proxy(bigint, bigint)', 'public.block_proxy(bigint, bigint, text, interval)',
        'public.unblock_proxy(bigint)', 'public.unblock_cooled_down_proxies()', 'public.release_stuck_proxies()',
        'public.release_container_proxies(text)'];
    v_grantee   text;
    v_functions text[];
BEGIN
    FOR v_grantee, v_functions IN
        WITH updaters AS (
            SELECT c.relname, a.grantee
              FROM pg_catalog.pg_class c
             CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
             WHERE c.oid IN ('public.proxies'::regclass, 'public.catalog_tasks'::regclass,
                             'public.object_tasks'::regclass)
               AND a.privilege_type = 'UPDATE' AND a.grantee <> c.relowner
               AND a.grantee NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r
                                      WHERE r.rolname IN ('proxy_leases_worker', 'proxy_leases_operator'))
            UNION
            SELECT c.relname, a.grantee
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_attribute t ON t.attrelid = c.oid AND t.attacl IS NOT NULL
             CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a
             WHERE c.oid IN ('public.proxies'::regclass, 'public.catalog_tasks'::regclass,
                             'public.object_tasks'::regclass)
               AND a.privilege_type = 'UPDATE' AND a.grantee <> c.relowner
               AND a.grantee NOT IN (SELECT r.oid FROM pg_catalog.pg_roles r
                                      WHERE r.rolname IN ('proxy_leases_worker', 'proxy_leases_operator'))),
        kept AS (
            SELECT g.grantee,
                   CASE WHEN EXISTS (SELECT FROM updaters u WHERE u.grantee = g.grantee AND u.relname = 'proxies')
                        THEN c_proxy_functions ELSE '{}' END
                   || CASE WHEN EXISTS (SELECT FROM updaters u WHERE u.grantee = g.grantee AND u.relname = 'catalog_tasks')
                            AND EXISTS (SELECT FROM updaters u WHERE u.grantee = g.grantee AND u.relname = 'object_tasks')
                           THEN ARRAY['public.requeue_stale_tasks(interval)'] ELSE '{}' END AS functions
              FROM (SELECT DISTINCT u.grantee FROM updaters u) g)
        SELECT CASE WHEN k.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, k.functions
          FROM kept k
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = k.grantee
         WHERE cardinality(k.functions) > 0
         ORDER BY 1
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', array_to_string(v_functions, ', '), v_grantee);
        RAISE NOTICE 'proxy-leases: % could call % before this upgrade, and still may', v_grantee,
                     array_to_string(v_functions, ', ')
            USING HINT = format('Once it is a member of proxy_leases_worker (or _operator, for the clean-ups): '
                                'REVOKE EXECUTE ON FUNCTION %s FROM %s;', array_to_string(v_functions, ', '), v_grantee);
    END LOOP;
END
$keep_the_fleets_rights$;

-- The worker: the fenced lease API, the status views, and its tasks. UPDATE on the task tables is
-- limited to the contract's columns; grant the fleet's own result columns as the fleet needs.
GRANT EXECUTE ON FUNCTION public.acquire_proxy(text, interval),
                          public.renew_proxy_lease(bigint, bigint, interval),
                          public.release_proxy(bigint, bigint),
                          public.block_proxy(bigint, bigint, text, interval)
    TO proxy_leases_worker, proxy_leases_operator;
GRANT SELECT ON public.proxy_pool_status, public.proxy_pool_by_container, public.stuck_proxies
    TO proxy_leases_worker, proxy_leases_operator;
GRANT SELECT, UPDATE (status, worker_id, heartbeat_at) ON public.catalog_tasks, public.object_tasks
    TO proxy_leases_worker, proxy_leases_operator;

-- The operator: the clean-ups, which free proxies without a token, and reading everything.
GRANT EXECUTE ON FUNCTION public.unblock_proxy(bigint),
                          public.unblock_cooled_down_proxies(),
                          public.release_stuck_proxies(),
                          public.release_container_proxies(text),
                          public.requeue_stale_tasks(interval),
                          public.prune_lease_events(integer)
    TO proxy_leases_operator;
GRANT EXECUTE ON PROCEDURE public.run_lease_maintenance(integer, integer, integer) TO proxy_leases_operator;
GRANT SELECT ON public.proxies, public.proxy_lease_events, public.proxy_recoveries, public.proxy_recovery_by_hour
    TO proxy_leases_operator;
