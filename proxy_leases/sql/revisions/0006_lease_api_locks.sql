-- Take every lock this revision (or its downgrade) needs before changing anything: as
-- 0003_lease_locks.sql, and proxy_lease_settings too, which this revision alters. Any transaction
-- that read the settings (a lease trigger, a dashboard) holds a lock on it; asked for outside the
-- retried attempts, that lock would keep the fleet waiting for the whole lock_timeout.
--
-- The fleet locks a task row then its proxy (the triggers) and also a proxy then its task (a worker
-- that releases its proxy, then finishes its task): any fixed order can deadlock with one of them,
-- and a lock request that waits makes every later writer of that table queue behind it. So the
-- locks are taken together, in short attempts: an attempt that cannot have them all within 200 ms
-- gives them all back and lets the fleet through, and the attempts go on until lock_timeout.

DO $take_locks$
DECLARE
    v_budget   text := current_setting('lock_timeout');
    v_deadline timestamptz := CASE WHEN v_budget IN ('0', '0ms') THEN 'infinity'
                                   ELSE clock_timestamp() + v_budget::interval END;
BEGIN
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '200ms', true);
            LOCK TABLE public.catalog_tasks, public.object_tasks IN SHARE ROW EXCLUSIVE MODE;
            LOCK TABLE public.proxies, public.proxy_lease_settings IN ACCESS EXCLUSIVE MODE;
            PERFORM set_config('lock_timeout', v_budget, true);
            RETURN;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            IF clock_timestamp() >= v_deadline THEN
                RAISE EXCEPTION 'could not lock proxies, proxy_lease_settings, catalog_tasks and object_tasks '
                                'within lock_timeout %', v_budget
                    USING ERRCODE = 'lock_not_available',
                          HINT = 'A long transaction holds one of them; see pg_stat_activity, then retry.';
            END IF;
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
END
$take_locks$;
