-- Undo the baseline: drop only the fleet tables it created. Adopted tables held the user's data
-- before proxy-leases arrived and stay exactly where they are.

DO $drop_created$
DECLARE
    v_table text;
BEGIN
    FOR v_table IN SELECT table_name FROM public.proxy_leases_adopted_tables WHERE created ORDER BY table_name LOOP
        EXECUTE format('DROP TABLE IF EXISTS public.%I', v_table);
    END LOOP;
END
$drop_created$;

DROP TABLE public.proxy_leases_adopted_tables;
