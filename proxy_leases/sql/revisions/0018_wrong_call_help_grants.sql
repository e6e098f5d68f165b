-- Who may call the wrong-call helpers (0018_wrong_call_help): exactly who may call the function each
-- one stands beside, so that a worker that forgot its token gets the hint, not "permission denied",
-- and a role that may not release, renew or block gets "permission denied" as before. PUBLIC's
-- default EXECUTE is taken away first, then every grant of the real function is copied: the two
-- roles of 0014_least_privilege, and any role that kept its rights in 0014's NOTICE (drop such a
-- role with DROP OWNED BY, then DROP ROLE, as for any role with rights).

DO $copy_rights$
DECLARE
    v_helper  regprocedure;
    v_real    regprocedure;
    v_grantee text;
BEGIN
    FOR v_helper, v_real IN
        VALUES ('public.release_proxy(bigint)'::regprocedure, 'public.release_proxy(bigint, bigint)'::regprocedure),
               ('public.renew_proxy_lease(bigint)', 'public.renew_proxy_lease(bigint, bigint, interval)'),
               ('public.block_proxy(bigint, text)', 'public.block_proxy(bigint, bigint, text, interval)'),
               ('public.block_proxy(bigint, bigint)', 'public.block_proxy(bigint, bigint, text, interval)')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_helper);
        FOR v_grantee IN
            SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
              FROM pg_catalog.pg_proc p
             CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
              LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
             WHERE p.oid = v_real AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'
             ORDER BY 1
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', v_helper, v_grantee);
        END LOOP;
    END LOOP;
END
$copy_rights$;
