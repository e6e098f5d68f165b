-- The revision this version of proxy-leases installs last: what proxy_leases_health expects the
-- database to be at. Every revision since 0021_maintenance_health replaces it with its own name
-- (a new version of this file); tests/upgrades/test_migrations.py fails until it does.

CREATE OR REPLACE FUNCTION public.proxy_leases_head_revision()
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT text '0022_self_healing'
$$;

COMMENT ON FUNCTION public.proxy_leases_head_revision() IS
    'The head revision of the proxy-leases that installed this function: 0022_self_healing.';
