-- block_proxy(proxy_id, lease_token) without its reason: a wrong call, answered with the right one.
-- Without this overload PostgreSQL said only "function block_proxy(integer, bigint) does not
-- exist". Same SQLSTATE (42883, undefined_function) and the same shape as
-- block_proxy.without_token.v1.sql: the values, why a reason is needed, and the call to make. It
-- never looks the proxy up and changes nothing.
--
-- It cannot take a correct call: the real block_proxy takes three or four arguments, this one exactly
-- two. Nor does it take the forgotten-token call: an untyped second argument (block_proxy(65,
-- 'HTTP 403'), or block_proxy($1, $2) with untyped parameters) prefers the string category, so it
-- still reaches block_proxy(bigint, text); only a number as the second argument comes here.
-- Same rights as the real one (0018_wrong_call_help_grants.sql). Since 0018_wrong_call_help.

CREATE OR REPLACE FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'block_proxy(%, %) is missing the reason', coalesce(block_proxy.proxy_id::text, 'NULL'),
                    coalesce(block_proxy.lease_token::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A ban says why: the reason is kept with the proxy (blocked_reason) and in the audit trail, '
                       'and it is what an operator reads before unblocking it.',
              HINT = format('Call block_proxy(%s, %s, ''HTTP 403''), with what the site answered, and a cooldown '
                            'such as ''30 minutes'' as a fourth argument if the ban should end by itself.',
                            coalesce(block_proxy.proxy_id::text, 'NULL'), coalesce(block_proxy.lease_token::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.block_proxy(bigint, bigint) IS
    'Not an API: a ban without its reason raises 42883 with a hint showing block_proxy(proxy_id, '
    'lease_token, reason, cooldown). It reads and changes nothing. EXECUTE as for '
    'block_proxy(bigint, bigint, text, interval).';
