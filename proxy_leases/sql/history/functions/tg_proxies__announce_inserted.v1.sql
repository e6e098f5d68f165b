-- New proxies wake the workers waiting for one: once per INSERT statement, however many rows it
-- adds, so a bulk load of the pool costs one notification (see tg_proxies__announce_available).

CREATE OR REPLACE FUNCTION public.tg_proxies__announce_inserted()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_first bigint := (SELECT min(n.id) FROM inserted n WHERE NOT n.is_in_use AND n.is_blocked IS NOT TRUE);
BEGIN
    IF v_first IS NOT NULL THEN
        PERFORM pg_notify('proxy_available', v_first::text);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__announce_inserted() IS
    'Statement trigger on proxies: one NOTIFY proxy_available per INSERT that adds free, unblocked '
    'proxies, with the smallest such id as payload.';
