-- Wrong calls (0018_wrong_call_help): release_proxy, renew_proxy_lease and block_proxy name a grant
-- by (proxy_id, lease_token). Given the other way round, the pair names no grant, and the call
-- would say the lease no longer holds (or return false, and a release or a ban would be lost) while
-- the worker's own lease may well hold. Each of the three calls this once the pair named no row, so
-- a call that succeeds pays nothing for it; it raises 22023 with the call in order when the
-- arguments look swapped, and returns otherwise.
--
-- They look swapped when the token given is a proxy's id and that proxy's grant (held, or the last
-- one, ended: released_lease_token) has the proxy id given as its token; or when no proxy has the
-- id given and it is as large as a token: every token is above 10^15, since tokens start at the
-- install time in microseconds since 1970 (proxy_lease_token_seq), and no proxy id comes near.
-- It only reads, never locks, and changes nothing. Not for callers: PUBLIC may not execute it; the
-- three run as its owner.

CREATE OR REPLACE FUNCTION public.raise_if_lease_arguments_swapped(called text, proxy_id bigint, lease_token bigint,
                                                                   undone text, rest_of_call text DEFAULT '')
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_swapped public.proxies;
BEGIN
    SELECT * INTO v_swapped
      FROM public.proxies s
     WHERE s.id = raise_if_lease_arguments_swapped.lease_token
       AND (s.lease_token = raise_if_lease_arguments_swapped.proxy_id
            OR (s.lease_token IS NULL AND s.released_lease_token = raise_if_lease_arguments_swapped.proxy_id)
            OR (raise_if_lease_arguments_swapped.proxy_id >= 1000000000000000
                AND NOT EXISTS (SELECT FROM public.proxies p WHERE p.id = raise_if_lease_arguments_swapped.proxy_id)));
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'proxy_id % and lease_token % look swapped', raise_if_lease_arguments_swapped.proxy_id,
                    raise_if_lease_arguments_swapped.lease_token
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = CASE WHEN v_swapped.lease_token = raise_if_lease_arguments_swapped.proxy_id
                            THEN format('Proxy %s is held under lease token %s.', v_swapped.id, v_swapped.lease_token)
                            WHEN v_swapped.lease_token IS NULL
                                 AND v_swapped.released_lease_token = raise_if_lease_arguments_swapped.proxy_id
                            THEN format('Proxy %s was last granted under lease token %s.',
                                        v_swapped.id, v_swapped.released_lease_token)
                            ELSE format('There is no proxy %s, and %s is a proxy''s id.',
                                        raise_if_lease_arguments_swapped.proxy_id, v_swapped.id)
                       END || format(' Nothing was %s.', raise_if_lease_arguments_swapped.undone),
              HINT = format('Call %s(%s, %s%s): the proxy id first, then the lease token.',
                            raise_if_lease_arguments_swapped.called, raise_if_lease_arguments_swapped.lease_token,
                            raise_if_lease_arguments_swapped.proxy_id, raise_if_lease_arguments_swapped.rest_of_call);
END
$$;

REVOKE EXECUTE ON FUNCTION public.raise_if_lease_arguments_swapped(text, bigint, bigint, text, text) FROM PUBLIC;

COMMENT ON FUNCTION public.raise_if_lease_arguments_swapped(text, bigint, bigint, text, text) IS
    'For release_proxy, renew_proxy_lease and block_proxy, once their (proxy_id, lease_token) named no '
    'grant: raises 22023 "look swapped", with the call in order in the hint, when the token given is a '
    'proxy''s id whose grant has the proxy id given as its token, or the proxy id given is no proxy''s and '
    'is as large as a token (10^15 or more); returns otherwise. Only reads. Not executable by PUBLIC.';
