-- release_proxy(proxy_id) without its lease token: a wrong call, answered with the right one. Without
-- this overload PostgreSQL said only "function release_proxy(integer) does not exist". Same SQLSTATE
-- (42883, undefined_function), so whatever told that error apart still does; now with the value, why
-- a token is needed, and the call to make. It never looks the proxy up: it reveals nothing about who
-- holds it, and changes nothing.
--
-- It cannot take a correct call: every call of release_proxy(bigint, bigint) has two arguments, and
-- this one takes exactly one (no default), so a literal, a typed value or an untyped parameter
-- ($1, $2 of asyncpg or a server-side prepared statement) still resolves to the real function.
-- Same rights as the real one (0018_wrong_call_help_grants.sql): a worker gets this help, not
-- "permission denied". It runs with the caller's rights: it reads and writes nothing.
-- Since 0018_wrong_call_help.

CREATE OR REPLACE FUNCTION public.release_proxy(proxy_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'release_proxy(%) is missing the lease_token', coalesce(release_proxy.proxy_id::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A release names the grant, (proxy_id, lease_token): the proxy id alone could free a proxy '
                       'that another worker holds now.',
              HINT = format('Call release_proxy(%s, <lease_token from acquire_proxy>).',
                            coalesce(release_proxy.proxy_id::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.release_proxy(bigint) IS
    'Not an API: a release without its lease token raises 42883 with a hint showing release_proxy(proxy_id, '
    'lease_token). It reads and changes nothing. EXECUTE as for release_proxy(bigint, bigint).';
