-- renew_proxy_lease(proxy_id) without its lease token: a wrong call, answered with the right one.
-- Without this overload PostgreSQL said only "function renew_proxy_lease(integer) does not exist".
-- Same SQLSTATE (42883, undefined_function), so whatever told that error apart still does; now with
-- the value, why a token is needed, and the call to make. It never looks the proxy up: it reveals
-- nothing about who holds it (least of all the token), and changes nothing.
--
-- It cannot take a correct call: renew_proxy_lease(bigint, bigint, interval DEFAULT NULL) takes two
-- or three arguments, and this one exactly one (no default). It has deliberately no lease: a
-- (bigint, interval) overload would make renew_proxy_lease($1, $2) with untyped parameters
-- (asyncpg's, a server-side PREPARE's) "not unique", and so break the fleet's correct calls.
-- renew_proxy_lease(65, '10 minutes') therefore still gets PostgreSQL's 22P02 for '10 minutes' as a
-- bigint.
-- Same rights as the real one (0018_wrong_call_help_grants.sql): a worker gets this help, not
-- "permission denied". It runs with the caller's rights: it reads and writes nothing.
-- Since 0018_wrong_call_help.

CREATE OR REPLACE FUNCTION public.renew_proxy_lease(proxy_id bigint)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'renew_proxy_lease(%) is missing the lease_token', coalesce(renew_proxy_lease.proxy_id::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A renewal names the grant, (proxy_id, lease_token): the token is how a worker learns '
                       'that it lost the lease.',
              HINT = format('Call renew_proxy_lease(%s, <lease_token from acquire_proxy>), with a lease such as '
                            '''5 minutes'' as a third argument, or none for lease_duration.',
                            coalesce(renew_proxy_lease.proxy_id::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.renew_proxy_lease(bigint) IS
    'Not an API: a renewal without its lease token raises 42883 with a hint showing '
    'renew_proxy_lease(proxy_id, lease_token, lease). It reads and changes nothing. EXECUTE as for '
    'renew_proxy_lease(bigint, bigint, interval).';
