-- What the fleet's heartbeat_manager.py did, done where the data is: a task in processing whose
-- worker stopped beating goes back to pending with no worker. The release trigger on the task
-- tables frees that worker's proxy in the same statement, with a strike against it.
--
-- A task in processing with heartbeat_at NULL counts as stale: set heartbeat_at when you claim a
-- task. Rows another transaction has locked are skipped (a heartbeat in flight is a sign of life);
-- the next run sees them. Task rows are locked first, proxy rows after, never waited for.

CREATE OR REPLACE FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_timeout interval := coalesce(requeue_stale_tasks.heartbeat_timeout,
                                   (SELECT s.heartbeat_timeout FROM public.proxy_lease_settings s));
    v_cutoff  timestamptz;
    v_catalog integer;
    v_object  integer;
BEGIN
    IF v_timeout <= interval '0' THEN
        RAISE EXCEPTION 'heartbeat_timeout must be positive, got %', v_timeout
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for proxy_lease_settings.heartbeat_timeout.';
    END IF;
    v_cutoff := clock_timestamp() - v_timeout;

    UPDATE public.catalog_tasks t
       SET status = 'pending', worker_id = NULL
     WHERE t.id = ANY (ARRAY(SELECT c.id
                               FROM public.catalog_tasks c
                              WHERE c.status = 'processing'
                                AND (c.heartbeat_at < v_cutoff OR c.heartbeat_at IS NULL)
                              ORDER BY c.id
                                FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_catalog = ROW_COUNT;

    UPDATE public.object_tasks t
       SET status = 'pending', worker_id = NULL
     WHERE t.id = ANY (ARRAY(SELECT o.id
                               FROM public.object_tasks o
                              WHERE o.status = 'processing'
                                AND (o.heartbeat_at < v_cutoff OR o.heartbeat_at IS NULL)
                              ORDER BY o.id
                                FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_object = ROW_COUNT;

    RETURN v_catalog + v_object;
END
$$;

COMMENT ON FUNCTION public.requeue_stale_tasks(interval) IS
    'Moves tasks in processing whose heartbeat_at is older than heartbeat_timeout (NULL: the setting), '
    'or NULL, back to pending with worker_id NULL, in catalog_tasks and object_tasks, and returns how '
    'many. The release trigger frees their workers'' proxies (a strike each). Never waits on a locked '
    'row. Run by run_lease_maintenance. A timeout <= 0 raises 22023.';
