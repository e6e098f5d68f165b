-- Leases that end further ahead than the new bound, written before this revision had one, are cut to
-- it, not freed: their workers may be alive. The bound is written out: it is longest_lease's default,
-- which 0022_self_healing_settings.sql has just given the setting. Each cut lease is named in a WARNING.
DO $$
DECLARE
    v_cut record;
BEGIN
    FOR v_cut IN
        UPDATE public.proxies p
           SET leased_until = now() + interval '1 day'
         WHERE p.is_in_use
           AND p.leased_until > now() + interval '1 day'
        RETURNING p.id, p.worker_id
    LOOP
        RAISE WARNING 'proxy % (held by %) had a lease ending beyond longest_lease (1 day): it now ends a day from now',
                      v_cut.id, v_cut.worker_id;
    END LOOP;
END
$$;
