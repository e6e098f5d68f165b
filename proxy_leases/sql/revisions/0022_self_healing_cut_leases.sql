-- Leases written before this revision that end further ahead than the new bound, or never (either
-- infinity), are cut to it, not freed: their workers may be alive. The bound is written out as
-- 0022_self_healing_settings.sql has just set longest_lease: a day, or lease_duration if longer.
-- Each cut lease is named in a WARNING. The lease trigger at this point (v5) stamps renewed_at on a
-- lease end moved ahead, as on any renewal: a sign of life the holder did not give, so a dead holder's
-- proxy comes back up to that bound later than it would have (never, before).
DO $$
DECLARE
    v_bound interval := greatest(interval '1 day', (SELECT s.lease_duration FROM public.proxy_lease_settings s));
    v_cut   record;
BEGIN
    FOR v_cut IN
        UPDATE public.proxies p
           SET leased_until = CASE WHEN p.leased_until = '-infinity' THEN now() ELSE now() + v_bound END
         WHERE p.is_in_use
           AND (NOT isfinite(p.leased_until) OR p.leased_until > now() + v_bound)
        RETURNING p.id, p.worker_id, p.leased_until
    LOOP
        RAISE WARNING 'proxy % (held by %) had a lease ending beyond longest_lease (%): it now ends at %',
                      v_cut.id, v_cut.worker_id, v_bound, v_cut.leased_until;
    END LOOP;
END
$$;
