-- Undo the baseline: drop only the fleet tables it created, and only while they are empty.
-- Adopted tables held the user's data before proxy-leases arrived and stay exactly where they are;
-- a table the baseline created but the fleet has filled since is the user's data too.

DO $drop_created$
DECLARE
    v_table    text;
    v_has_rows boolean;
BEGIN
    FOR v_table IN SELECT table_name FROM public.proxy_leases_adopted_tables WHERE created ORDER BY table_name LOOP
        CONTINUE WHEN to_regclass(format('public.%I', v_table)) IS NULL;
        EXECUTE format('SELECT EXISTS (SELECT FROM public.%I)', v_table) INTO v_has_rows;
        IF v_has_rows THEN
            RAISE EXCEPTION 'public.% holds rows; downgrading the baseline would drop them', v_table
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('To keep the table and remove proxy-leases: UPDATE proxy_leases_adopted_tables '
                                    'SET created = false WHERE table_name = %L, then downgrade again. '
                                    'To drop it: empty it first.', v_table);
        END IF;
        EXECUTE format('DROP TABLE public.%I', v_table);
    END LOOP;
END
$drop_created$;

DROP TABLE public.proxy_leases_adopted_tables;
