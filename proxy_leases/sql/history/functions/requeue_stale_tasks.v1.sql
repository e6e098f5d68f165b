-- What the fleet's heartbeat_manager.py did, done where the data is: a task in processing whose
-- worker stopped beating goes back to pending with no worker. The release trigger on the task
-- tables frees that worker's proxy in the same statement, with a strike against it.
--
-- A task in processing with heartbeat_at NULL counts as stale: set heartbeat_at when you claim a
-- task. Rows another transaction has locked are skipped (a heartbeat in flight is a sign of life);
-- the next run sees them. Task rows are locked first, proxy rows after, never waited for.
--
-- Both tables are requeued by one statement each. If the fleet's own rules (a trigger, a CHECK)
-- refuse one row, that statement is retried in batches of 100 and a batch that fails row by row,
-- so the refused rows stay in processing, named in a WARNING, and every other stale task is still
-- requeued. Each retry is a subtransaction: batches keep their number low on a large backlog.

CREATE OR REPLACE FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    -- The task tables share the contract, so one statement serves both; $2 narrows it to some tasks.
    c_requeue  constant text := $sql$
        UPDATE public.%1$I t
           SET status = 'pending', worker_id = NULL
         WHERE t.id = ANY (ARRAY(SELECT s.id
                                   FROM public.%1$I s
                                  WHERE s.status = 'processing'
                                    AND (s.heartbeat_at < $1 OR s.heartbeat_at IS NULL)
                                    AND ($2 IS NULL OR s.id = ANY ($2))
                                  ORDER BY s.id
                                    FOR UPDATE SKIP LOCKED))$sql$;
    c_stale    constant text := $sql$
        SELECT array_agg(s.id ORDER BY s.id) FROM public.%1$I s
         WHERE s.status = 'processing' AND (s.heartbeat_at < $1 OR s.heartbeat_at IS NULL)$sql$;
    c_batch    constant integer := 100;
    c_named    constant integer := 20;
    v_timeout  interval := coalesce(requeue_stale_tasks.heartbeat_timeout,
                                    (SELECT s.heartbeat_timeout FROM public.proxy_lease_settings s));
    v_cutoff   timestamptz;
    v_table    text;
    v_stale    bigint[];
    v_batch    bigint[];
    v_task     bigint;
    v_count    integer;
    v_requeued integer := 0;
    v_refused  text[] := '{}';
    v_state    text;
    v_message  text;
BEGIN
    IF v_timeout <= interval '0' THEN
        RAISE EXCEPTION 'heartbeat_timeout must be positive, got %', v_timeout
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for proxy_lease_settings.heartbeat_timeout.';
    END IF;
    v_cutoff := clock_timestamp() - v_timeout;

    FOREACH v_table IN ARRAY ARRAY['catalog_tasks', 'object_tasks'] LOOP
        BEGIN
            EXECUTE format(c_requeue, v_table) USING v_cutoff, NULL::bigint[];
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_requeued := v_requeued + v_count;
        EXCEPTION WHEN OTHERS THEN
            EXECUTE format(c_stale, v_table) INTO v_stale USING v_cutoff;
            FOR v_first IN 1 .. coalesce(cardinality(v_stale), 0) BY c_batch LOOP
                v_batch := v_stale[v_first : v_first + c_batch - 1];
                BEGIN
                    EXECUTE format(c_requeue, v_table) USING v_cutoff, v_batch;
                    GET DIAGNOSTICS v_count = ROW_COUNT;
                    v_requeued := v_requeued + v_count;
                EXCEPTION WHEN OTHERS THEN
                    FOREACH v_task IN ARRAY v_batch LOOP
                        BEGIN
                            EXECUTE format(c_requeue, v_table) USING v_cutoff, ARRAY[v_task];
                            GET DIAGNOSTICS v_count = ROW_COUNT;
                            v_requeued := v_requeued + v_count;
                        EXCEPTION WHEN OTHERS THEN
                            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
                            v_refused := v_refused
                                || format('%s %s: %s (SQLSTATE %s)', v_table, v_task, v_message, v_state);
                        END;
                    END LOOP;
                END;
            END LOOP;
        END;
    END LOOP;

    IF cardinality(v_refused) > 0 THEN
        RAISE WARNING 'requeue_stale_tasks: % stale task(s) could not be requeued', cardinality(v_refused)
            USING DETAIL = array_to_string(v_refused[1 : c_named], E'\n')
                           || CASE WHEN cardinality(v_refused) > c_named
                                   THEN format(E'\n(and %s more)', cardinality(v_refused) - c_named) ELSE '' END,
                  HINT = 'The fleet''s own rules refused them; they stay in processing until those rules allow it.';
    END IF;
    RETURN v_requeued;
END
$$;

COMMENT ON FUNCTION public.requeue_stale_tasks(interval) IS
    'Moves tasks in processing whose heartbeat_at is older than heartbeat_timeout (NULL: the setting), '
    'or NULL, back to pending with worker_id NULL, in catalog_tasks and object_tasks, and returns how '
    'many. The release trigger frees their workers'' proxies (a strike each). Never waits on a locked '
    'row. A row the fleet''s own rules refuse stays in processing, named in a WARNING; the others are '
    'still requeued. Run by run_lease_maintenance. A timeout <= 0 raises 22023.';
