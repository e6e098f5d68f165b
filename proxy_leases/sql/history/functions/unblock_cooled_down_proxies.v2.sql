-- Cooldowns end by themselves: the scheduled maintenance calls this. Strikes stay, so a proxy that
-- is banned again soon after its cooldown moves on towards quarantine.
-- Its writes reach the audit trail (proxy_lease_events) with reason cooldown_over, named in
-- proxy_leases.event_reason for its statement only (see tg_proxies__record_lease_events).

CREATE OR REPLACE FUNCTION public.unblock_cooled_down_proxies()
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_unblocked integer;
BEGIN
    PERFORM set_config('proxy_leases.event_reason', 'cooldown_over', true);
    UPDATE public.proxies p
       SET is_blocked = false
     WHERE p.id = ANY (ARRAY(SELECT b.id
                               FROM public.proxies b
                              WHERE b.blocked_until <= clock_timestamp() AND b.is_blocked
                              ORDER BY b.id
                                FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_unblocked = ROW_COUNT;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN v_unblocked;
END
$$;

COMMENT ON FUNCTION public.unblock_cooled_down_proxies() IS
    'Unblocks every proxy whose blocked_until has passed and returns how many; their strikes stay. '
    'Never waits on a locked row. Run by run_lease_maintenance.';
