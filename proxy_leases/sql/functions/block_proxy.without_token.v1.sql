-- block_proxy(proxy_id, reason) without its lease token: a wrong call, answered with the right one.
-- Without this overload PostgreSQL said only "function block_proxy(integer, unknown) does not
-- exist". Same SQLSTATE (42883, undefined_function), so whatever told that error apart still does;
-- now with the values, why a token is needed, and the call to make. It never looks the proxy up: it
-- reveals nothing about who holds it, and changes nothing.
--
-- It cannot take a correct call: block_proxy(bigint, bigint, text, interval DEFAULT NULL) takes three
-- or four arguments, and this one exactly two (no default). It has deliberately no cooldown: a
-- (bigint, text, interval) overload would make block_proxy($1, $2, $3) with untyped parameters
-- (asyncpg's, a server-side PREPARE's) "not unique", and so break the fleet's correct calls.
-- block_proxy(65, 'HTTP 403', '30 minutes') therefore still gets PostgreSQL's 22P02 for 'HTTP 403'
-- as a bigint.
-- Same rights as the real one (0018_wrong_call_help_grants.sql): a worker gets this help, not
-- "permission denied". It runs with the caller's rights: it reads and writes nothing.
-- Since 0018_wrong_call_help.

CREATE OR REPLACE FUNCTION public.block_proxy(proxy_id bigint, reason text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'block_proxy(%, %) is missing the lease_token', coalesce(block_proxy.proxy_id::text, 'NULL'),
                    coalesce(quote_literal(left(block_proxy.reason, 200)), 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A ban names the grant, (proxy_id, lease_token): the proxy id alone could block a proxy '
                       'that another worker was granted since.',
              HINT = format('Call block_proxy(%s, <lease_token from acquire_proxy>, %s), with a cooldown such as '
                            '''30 minutes'' as a fourth argument if the ban should end by itself.',
                            coalesce(block_proxy.proxy_id::text, 'NULL'),
                            coalesce(quote_literal(left(block_proxy.reason, 200)), 'NULL'));
END
$$;

COMMENT ON FUNCTION public.block_proxy(bigint, text) IS
    'Not an API: a ban without its lease token raises 42883 with a hint showing block_proxy(proxy_id, '
    'lease_token, reason, cooldown). It reads and changes nothing. EXECUTE as for '
    'block_proxy(bigint, bigint, text, interval).';
