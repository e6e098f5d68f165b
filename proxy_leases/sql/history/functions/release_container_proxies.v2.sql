-- A container that starts again calls this first: its previous life's workers are all dead, so
-- every proxy any of them holds goes back to the pool now, without waiting for leases to run out.
--
-- The incident's hand-written LIKE '8b4f59aa_%' also matched container 8b4f59aa1's workers: "_" is
-- a LIKE wildcard. Here the prefix is compared as a plain string, and container ids may not
-- contain "_" at all, so the prefix <container_id>_ names exactly one container's workers.
-- Each proxy it frees was held by a worker that died with its container: a strike against it.

CREATE OR REPLACE FUNCTION public.release_container_proxies(container_id text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_prefix text;
    v_freed  integer;
BEGIN
    IF release_container_proxies.container_id IS NULL OR release_container_proxies.container_id = '' THEN
        RAISE EXCEPTION 'container_id must not be NULL or empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the container that is starting, as in its worker ids <container_id>_<n>.';
    END IF;
    IF release_container_proxies.container_id !~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed container_id %', quote_literal(left(release_container_proxies.container_id, 200))
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A container id is 1 to 128 letters, digits, ".", ":" or "-", starting with a letter or digit.',
                  HINT = 'Pass the container part of a worker id (8b4f59aa for worker 8b4f59aa_3), '
                         'not a pattern: "_" and "%" are not allowed.';
    END IF;

    v_prefix := release_container_proxies.container_id || '_';

    -- Rows another transaction has locked are skipped, not waited for: that transaction is changing
    -- them now (the heartbeat manager requeueing this container's tasks frees them itself), and
    -- waiting while holding the rows locked so far could deadlock with it. Whatever it leaves held
    -- by this container's dead workers, the sweeper frees.
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
     WHERE p.id = ANY (ARRAY(SELECT h.id
                               FROM public.proxies h
                              WHERE (h.is_in_use OR h.worker_id IS NOT NULL)
                                AND starts_with(h.worker_id, v_prefix)
                              ORDER BY h.id
                                FOR UPDATE SKIP LOCKED));

    GET DIAGNOSTICS v_freed = ROW_COUNT;
    RETURN v_freed;
END
$$;

COMMENT ON FUNCTION public.release_container_proxies(text) IS
    'Frees every proxy held by a worker <container_id>_* and returns how many. Call it when a '
    'container starts, before its workers take proxies. Never waits: a row another transaction has '
    'locked is left to it (and to the sweeper). Each freed proxy gets a strike. NULL, empty or '
    'malformed ids (a "_", "%", spaces, over 128 characters) raise 22023 and free nothing.';
