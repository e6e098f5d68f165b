-- A task heartbeat is the fleet's most frequent write. Until 0019 every one of them ran the renewal
-- trigger, a PL/pgSQL call that read the settings and probed proxies, although nine in ten found the
-- lease too fresh to renew: heartbeats ran a fifth to a third slower than without proxy-leases.
-- Now the heartbeat triggers' WHEN clause lets through only the first heartbeat of a task in each
-- renewal slot, a tenth of lease_duration long, and drops every other one before any PL/pgSQL runs.
-- A tenth is the renewal threshold of tg_tasks__renew_proxy_lease_on_heartbeat (it renews once less
-- than nine tenths of the lease is left), so a worker that beats every few seconds still gets a
-- chance to renew in every slot (docs/design.md, "Heartbeats: renewal slots").
--
-- The slots are cut on the heartbeat's own clock (date_bin of heartbeat_at): a worker whose clock is
-- off gets one renewal chance per slot all the same, and the renewal itself runs from the database's
-- clock. A WHEN clause cannot read the settings, so the slot is written into it; this function writes
-- it, from the revision that installs it and from the settings trigger whenever lease_duration is set.
--
-- CREATE OR REPLACE TRIGGER needs the tables' owner, hence SECURITY DEFINER; EXECUTE is granted to
-- nobody. It takes SHARE ROW EXCLUSIVE on catalog_tasks and object_tasks: it waits for the task writes
-- in progress and holds the next ones until the transaction commits. At most 5 s each, then 55P03 and
-- nothing changes.
-- search_path pg_catalog, pg_temp, as since 0014_least_privilege (README, "Roles and rights").

CREATE OR REPLACE FUNCTION public.place_heartbeat_triggers()
RETURNS interval
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    v_lease interval := (SELECT s.lease_duration FROM public.proxy_lease_settings s);
    -- In seconds, so that a lease of months gives a slot date_bin accepts; never below a millisecond.
    v_slot  interval := make_interval(secs => greatest(round(extract(epoch FROM v_lease) / 10, 3), 0.001));
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['catalog_tasks', 'object_tasks'] LOOP
        BEGIN
            EXECUTE format(
                $ddl$CREATE OR REPLACE TRIGGER renew_proxy_lease_on_heartbeat
                         AFTER UPDATE OF heartbeat_at ON public.%I
                         FOR EACH ROW
                         WHEN (NEW.status = 'processing' AND NEW.worker_id IS NOT NULL
                               AND (OLD.heartbeat_at IS NULL AND NEW.heartbeat_at IS NOT NULL
                                    OR pg_catalog.date_bin(%L::interval, NEW.heartbeat_at,
                                                           '2001-01-01 00:00:00+00') > OLD.heartbeat_at))
                         EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat()$ddl$,
                v_table, v_slot);
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'could not give the heartbeat triggers the renewal slot of lease_duration %: '
                            '% stayed locked for 5 s', v_lease, v_table
                USING ERRCODE = 'lock_not_available',
                      HINT = format('A long transaction is writing %s; see pg_stat_activity, then retry. '
                                    'Nothing was changed.', v_table);
        END;
        EXECUTE format('COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.%I IS %L', v_table,
                       format('proxy-leases: the first heartbeat of a task in processing in each renewal slot of %s '
                              '(a tenth of lease_duration, on the heartbeat''s own clock) renews the worker''s proxy '
                              'lease; the others run nothing (place_heartbeat_triggers).', v_slot));
    END LOOP;
    RETURN v_slot;
END
$$;

COMMENT ON FUNCTION public.place_heartbeat_triggers() IS
    'Rewrites the heartbeat triggers on catalog_tasks and object_tasks so that only the first heartbeat of a '
    'task in each renewal slot (a tenth of lease_duration) runs tg_tasks__renew_proxy_lease_on_heartbeat; '
    'returns the slot. Run by the settings trigger whenever lease_duration is set. Waits at most 5 s for the '
    'lock on each task table, then raises 55P03 and changes nothing. Runs as its owner; EXECUTE is granted '
    'to nobody.';
