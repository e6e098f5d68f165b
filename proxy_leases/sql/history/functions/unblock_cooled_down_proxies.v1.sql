-- Cooldowns end by themselves: the scheduled maintenance calls this. Strikes stay, so a proxy that
-- is banned again soon after its cooldown moves on towards quarantine.

CREATE OR REPLACE FUNCTION public.unblock_cooled_down_proxies()
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_unblocked integer;
BEGIN
    UPDATE public.proxies p
       SET is_blocked = false
     WHERE p.id = ANY (ARRAY(SELECT b.id
                               FROM public.proxies b
                              WHERE b.blocked_until <= clock_timestamp() AND b.is_blocked
                              ORDER BY b.id
                                FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_unblocked = ROW_COUNT;
    RETURN v_unblocked;
END
$$;

COMMENT ON FUNCTION public.unblock_cooled_down_proxies() IS
    'Unblocks every proxy whose blocked_until has passed and returns how many; their strikes stay. '
    'Never waits on a locked row. Run by run_lease_maintenance.';
