-- The scheduled job: one CALL does all the periodic work, each step committed on its own so that a
-- step that fails (a constraint of the fleet's own on a task table, say) neither undoes nor stops
-- the others. The job still fails, with the first error, so cron.job_run_details shows it.
--
-- A procedure, so that it can COMMIT: call it outside a transaction block. Procedures that COMMIT
-- cannot carry a SET clause, so every name here is schema-qualified instead.

CREATE OR REPLACE PROCEDURE public.run_lease_maintenance(
    INOUT requeued_tasks integer DEFAULT NULL,
    INOUT released_proxies integer DEFAULT NULL,
    INOUT unblocked_proxies integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_failures text[] := '{}';
    v_first_state text;
    v_state text;
    v_message text;
BEGIN
    BEGIN
        requeued_tasks := public.requeue_stale_tasks();
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        v_first_state := coalesce(v_first_state, v_state);
        v_failures := v_failures || format('requeue_stale_tasks(): %s (SQLSTATE %s)', v_message, v_state);
    END;
    COMMIT;

    BEGIN
        released_proxies := public.release_stuck_proxies();
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        v_first_state := coalesce(v_first_state, v_state);
        v_failures := v_failures || format('release_stuck_proxies(): %s (SQLSTATE %s)', v_message, v_state);
    END;
    COMMIT;

    BEGIN
        unblocked_proxies := public.unblock_cooled_down_proxies();
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        v_first_state := coalesce(v_first_state, v_state);
        v_failures := v_failures || format('unblock_cooled_down_proxies(): %s (SQLSTATE %s)', v_message, v_state);
    END;
    COMMIT;

    IF cardinality(v_failures) > 0 THEN
        RAISE EXCEPTION 'proxy-leases maintenance: % of 3 steps failed; the others were done', cardinality(v_failures)
            USING ERRCODE = v_first_state,
                  DETAIL = array_to_string(v_failures, E'\n'),
                  HINT = 'The next run tries every step again.';
    END IF;
END
$$;

COMMENT ON PROCEDURE public.run_lease_maintenance(integer, integer, integer) IS
    'The scheduled job (CALL run_lease_maintenance(), outside a transaction block): requeue_stale_tasks, '
    'release_stuck_proxies, unblock_cooled_down_proxies, each committed on its own; returns the three '
    'counts. If a step fails the others still run and commit, and the call then raises the first '
    'error, every failure in DETAIL.';
