-- The scheduled job: one CALL does all the periodic work, each step committed on its own so that a
-- step that fails (a constraint of the fleet's own on a task table, say) neither undoes nor stops
-- the others. The job still fails, with the first error, so cron.job_run_details shows it.
-- A run that changed anything says what in one LOG line: cron.job_run_details records only "CALL".
--
-- A procedure, so that it can COMMIT: call it outside a transaction block. Procedures that COMMIT
-- cannot carry a SET clause, so every name here is schema-qualified instead.
-- The pruning count is in the LOG line only: the three INOUT arguments stay as they were, so a
-- scheduler's prepared CALL, and a run in flight while this is installed, are not broken by a new
-- result type.
-- v3 (0021_maintenance_health) records each run in proxy_lease_maintenance_runs: a row when it
-- starts, committed before the first step so that a run that dies is seen, completed with the
-- counts and failures when it ends. Recording is best effort: a write that fails (the table locked
-- for over a second, a role without the rights) becomes a WARNING, and the steps run as they would
-- without it. A session advisory lock, held until the run ends, tells proxy_leases_health that the
-- run is alive, however long it takes.

CREATE OR REPLACE PROCEDURE public.run_lease_maintenance(
    INOUT requeued_tasks integer DEFAULT NULL,
    INOUT released_proxies integer DEFAULT NULL,
    INOUT unblocked_proxies integer DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    c_steps constant text[] := ARRAY['requeue_stale_tasks', 'release_stuck_proxies', 'unblock_cooled_down_proxies',
                                     'prune_lease_events'];
    v_started     timestamptz := clock_timestamp();
    v_counts      integer[] := '{}';
    v_count       integer;
    v_pruned      integer;
    v_failures    text[] := '{}';
    v_first_state text;
    v_state       text;
    v_message     text;
    v_run         bigint;
    v_alive       boolean;
BEGIN
    -- Held for the session until the run ends (COMMITs do not release it): proxy_leases_health reads
    -- it in pg_locks to tell a run still working (blocked on a lock, say) from one that died. A run
    -- started while another holds it (an operator's CALL beside pg_cron's) goes ahead all the same.
    v_alive := pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('proxy_leases'),
                                                pg_catalog.hashtext('run_lease_maintenance'));
    BEGIN
        -- Waiting long for the record would delay the steps: a second, then the WARNING below.
        PERFORM set_config('lock_timeout', '1s', true);
        INSERT INTO public.proxy_lease_maintenance_runs DEFAULT VALUES RETURNING id INTO v_run;
        DELETE FROM public.proxy_lease_maintenance_runs r WHERE r.id <= v_run - 1440;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        RAISE WARNING 'run_lease_maintenance: this run is not recorded: % (SQLSTATE %)', v_message, v_state
            USING HINT = 'The steps run all the same; proxy_leases_health will report the maintenance late.';
    END;
    COMMIT;

    FOR v_step IN 1 .. cardinality(c_steps) LOOP
        v_count := NULL;
        BEGIN
            EXECUTE format('SELECT public.%I()', c_steps[v_step]) INTO v_count;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            v_first_state := coalesce(v_first_state, v_state);
            v_failures := v_failures || format('%s(): %s (SQLSTATE %s)', c_steps[v_step], v_message, v_state);
        END;
        COMMIT;
        v_counts := v_counts || v_count;
    END LOOP;

    requeued_tasks := v_counts[1];
    released_proxies := v_counts[2];
    unblocked_proxies := v_counts[3];
    v_pruned := v_counts[4];

    IF v_run IS NOT NULL THEN
        BEGIN
            PERFORM set_config('lock_timeout', '1s', true);
            UPDATE public.proxy_lease_maintenance_runs r
               SET finished_at = greatest(clock_timestamp(), r.started_at), requeued_tasks = v_counts[1],
                   released_proxies = v_counts[2], unblocked_proxies = v_counts[3], pruned_events = v_counts[4],
                   failures = v_failures
             WHERE r.id = v_run;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            RAISE WARNING 'run_lease_maintenance: the end of this run is not recorded: % (SQLSTATE %)', v_message, v_state;
        END;
    END IF;
    COMMIT;
    IF v_alive THEN
        PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('proxy_leases'), pg_catalog.hashtext('run_lease_maintenance'));
    END IF;

    IF coalesce(requeued_tasks, 0) + coalesce(released_proxies, 0) + coalesce(unblocked_proxies, 0)
       + coalesce(v_pruned, 0) > 0 THEN
        RAISE LOG 'run_lease_maintenance: requeued % stale tasks, freed % stuck proxies, unblocked % proxies, '
                  'pruned % events in % ms',
                  coalesce(requeued_tasks::text, 'no'), coalesce(released_proxies::text, 'no'),
                  coalesce(unblocked_proxies::text, 'no'), coalesce(v_pruned::text, 'no'),
                  round(extract(epoch FROM clock_timestamp() - v_started) * 1000);
    END IF;

    IF cardinality(v_failures) > 0 THEN
        RAISE EXCEPTION 'proxy-leases maintenance: % of % steps failed; the others were done',
                        cardinality(v_failures), cardinality(c_steps)
            USING ERRCODE = v_first_state,
                  DETAIL = array_to_string(v_failures, E'\n'),
                  HINT = 'The next run tries every step again.';
    END IF;
END
$$;

COMMENT ON PROCEDURE public.run_lease_maintenance(integer, integer, integer) IS
    'The scheduled job (CALL run_lease_maintenance(), outside a transaction block): requeue_stale_tasks, '
    'release_stuck_proxies, unblock_cooled_down_proxies, prune_lease_events, each committed on its own; '
    'returns the first three counts and, when any of the four is above 0, writes them all in one LOG line. '
    'If a step fails the '
    'others still run and commit, and the call then raises the first error, every failure in DETAIL. Each run '
    'is recorded in proxy_lease_maintenance_runs (a failure to record is only a WARNING).';
