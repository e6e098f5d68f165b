-- When a task stops being its worker's task in processing (finished, failed, requeued, reassigned or
-- deleted), the worker's proxy goes back to the pool in the same transaction, unless the worker still
-- has another task in processing; a task taken from its worker (back to pending, or to another
-- worker) adds a strike. The reasoning of every earlier version holds (history/functions/, v5):
-- locked proxy rows are skipped, never waited for; at REPEATABLE READ or SERIALIZABLE a proxy row
-- changed since the snapshot is skipped too; the reason reaches the audit trail through
-- proxy_leases.event_reason (docs/design.md, "The event reason: how the trail learns why").
--
-- v6 (0020_task_exit_inline_rule): "does the worker have another task in processing" is written out
-- here as the two EXISTS of worker_has_processing_task instead of calling it. A LANGUAGE sql function
-- that runs as its owner cannot be inlined, and PostgreSQL plans its body again in every transaction
-- that calls it from PL/pgSQL: about 170 µs of a task exit's 480 µs (docs/measurements.md, "The fleet's
-- own statements"). The two rules stay the same; tests/behaviour/test_release_trigger.py checks they agree.
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
    -- The rule of worker_has_processing_task, written out: that function, running as its owner, is
    -- planned afresh in every transaction that calls it, and cost each task exit about 170 µs.
    IF EXISTS (SELECT FROM public.catalog_tasks t WHERE t.worker_id = OLD.worker_id AND t.status = 'processing')
       OR EXISTS (SELECT FROM public.object_tasks t WHERE t.worker_id = OLD.worker_id AND t.status = 'processing') THEN
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
