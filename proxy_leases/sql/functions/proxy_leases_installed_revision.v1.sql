-- The revision the database is at, as Alembic recorded it in proxy_leases_alembic_version, for
-- proxy_leases_health. That table is created in the first schema of the deploying session's
-- search_path (public, unless the deploy role's own schema comes first), and only its owner may read
-- it: so the table is found in the catalog, and read as the owner of this function. Only a table
-- that owner owns counts, never a temporary one: anyone may create a table of that name in a schema
-- they can write to, and this function must not read it with its owner's rights.

CREATE OR REPLACE FUNCTION public.proxy_leases_installed_revision()
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table    regclass;
    v_revision text;
BEGIN
    SELECT c.oid INTO v_table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = 'proxy_leases_alembic_version' AND c.relkind IN ('r', 'p')
       AND c.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
       AND c.relpersistence <> 't'
     ORDER BY n.nspname <> 'public', n.nspname
     LIMIT 1;
    IF v_table IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT min(version_num::text) FROM %s', v_table) INTO v_revision;
    RETURN v_revision;
END
$$;

COMMENT ON FUNCTION public.proxy_leases_installed_revision() IS
    'The revision recorded in proxy_leases_alembic_version (NULL when there is none), readable by '
    'whoever may call this (proxy_leases_operator, pg_monitor).';
