-- A worker holds its proxy for its task. When the task stops being its task in processing
-- (finished, failed, requeued, reassigned or deleted), the proxy goes back to the pool in the same
-- transaction, unless the worker still has another task in processing.
-- A task sent back to pending, or handed to another worker while in processing, was not finished
-- by its worker: someone (requeue_stale_tasks, the fleet's heartbeat manager) took it from a worker
-- that stopped beating. That is a strike against the proxy; a task that ends done or failed
-- releases cleanly. A worker that gives up a task on purpose releases its proxy first
-- (release_proxy), and then no strike is counted.
-- The audit trail (proxy_lease_events) gets the reason: task_finished (done, failed, or any status
-- but pending and processing), task_deleted, requeued (back to pending) or reassigned, named in
-- proxy_leases.event_reason for its statement only.
--
-- A proxy row another transaction has locked is skipped, never waited for: that transaction is
-- changing it now (most often the worker releasing it), and waiting with this task row locked
-- could deadlock with a worker that releases its proxy, then finishes its task. If the row is left
-- held, the sweeper frees it once orphan_grace has passed.
--
-- v5: a fleet transaction at REPEATABLE READ or SERIALIZABLE that finishes or requeues a task keeps
-- working (docs/concurrency.md). At those levels PostgreSQL refuses to lock a proxy row changed
-- since the transaction's snapshot (40001), and v4 passed that error on to a statement that only
-- wrote a task. Such a proxy is now skipped like a locked one, in a subtransaction that only those
-- levels pay for; READ COMMITTED runs the statement as before.
-- SECURITY DEFINER: a heartbeat manager that may only write the task tables still frees proxies.
-- search_path pg_catalog, pg_temp, as since 0014_least_privilege (README, "Roles and rights").

CREATE OR REPLACE FUNCTION public.tg_tasks__release_proxy_on_task_exit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    -- Still in processing here means another worker has it now.
    v_strike integer := CASE WHEN TG_OP = 'UPDATE' AND NEW.status IN ('pending', 'processing') THEN 1 ELSE 0 END;
BEGIN
    IF public.worker_has_processing_task(OLD.worker_id) THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('proxy_leases.event_reason',
                       CASE WHEN TG_OP = 'DELETE' THEN 'task_deleted'
                            WHEN NEW.status = 'pending' THEN 'requeued'
                            WHEN NEW.status = 'processing' THEN 'reassigned'
                            ELSE 'task_finished' END,
                       true);

    IF current_setting('transaction_isolation') = 'read committed' THEN
        UPDATE public.proxies p
           SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + v_strike
         WHERE p.id = ANY (ARRAY(SELECT h.id
                                   FROM public.proxies h
                                  WHERE h.worker_id = OLD.worker_id AND h.is_in_use
                                  ORDER BY h.id
                                    FOR UPDATE SKIP LOCKED));
    ELSE
        BEGIN
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + v_strike
             WHERE p.id = ANY (ARRAY(SELECT h.id
                                       FROM public.proxies h
                                      WHERE h.worker_id = OLD.worker_id AND h.is_in_use
                                      ORDER BY h.id
                                        FOR UPDATE SKIP LOCKED));
        EXCEPTION WHEN serialization_failure THEN
            -- The proxy row changed after this transaction's snapshot: left to the sweeper, as a locked one is.
            NULL;
        END;
    END IF;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_tasks__release_proxy_on_task_exit() IS
    'Trigger on catalog_tasks and object_tasks: when a row leaves processing (status changes, '
    'worker_id changes or is cleared, or the row is deleted), frees the proxies of its old worker, '
    'unless that worker still has another task in processing in either table. A task sent back to '
    'pending or handed to another worker adds a strike to the proxy. Each release is logged in '
    'proxy_lease_events as task_finished, task_deleted, requeued or reassigned. A proxy row another '
    'transaction has locked, or, at REPEATABLE READ or SERIALIZABLE, changed since the transaction''s '
    'snapshot, is left to the sweeper.';
