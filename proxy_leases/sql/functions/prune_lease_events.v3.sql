-- Retention of the audit trail. The scheduled maintenance calls this every run, so each call is a
-- bounded batch: a backlog (a lowered event_retention, a maintenance job paused for a month) is
-- worked off over the next runs instead of in one long DELETE that holds its locks and writes its
-- WAL all at once. The oldest events go first, through the index on occurred_at: the cutoff is
-- computed once, so the planner bounds that index scan by it instead of reading every younger event
-- (a million events: 0.3 ms instead of 300 ms when nothing is due).
-- SECURITY DEFINER: a maintenance role granted EXECUTE may prune, though no fleet role may write the
-- trail; what goes is decided by event_retention, which only the owner can change.
--
-- Since 0014_least_privilege: search_path is pg_catalog, pg_temp, not empty: an empty search_path
-- still searches the caller's temporary schema first for tables and types, so a caller's own
-- pg_temp.text domain would run its CHECK as this function's owner. Listed last, pg_temp is never
-- reached, as every other name is qualified.
-- v3 (0021_maintenance_health) adds what it deletes, by event and reason, to
-- proxy_lease_events_pruned, so that proxy_lease_event_totals (the trail and what was pruned from
-- it) only ever grows: a counter Prometheus can take a rate of, which a count of the trail alone is
-- not, as every prune would look like a reset.

CREATE OR REPLACE FUNCTION public.prune_lease_events(batch_size integer DEFAULT 50000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_retention interval := (SELECT s.event_retention FROM public.proxy_lease_settings s);
    v_cutoff    timestamptz;
    v_pruned    integer;
BEGIN
    IF prune_lease_events.batch_size IS NULL OR prune_lease_events.batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be a positive number, got %', coalesce(prune_lease_events.batch_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass nothing for the default of 50000 events per call.';
    END IF;
    IF v_retention IS NULL THEN
        RETURN 0;
    END IF;
    v_cutoff := clock_timestamp() - v_retention;
    WITH pruned AS (
        DELETE FROM public.proxy_lease_events e
         WHERE e.id = ANY (ARRAY(SELECT o.id
                                   FROM public.proxy_lease_events o
                                  WHERE o.occurred_at < v_cutoff
                                  ORDER BY o.occurred_at
                                  LIMIT prune_lease_events.batch_size))
        RETURNING e.event, e.reason),
    counted AS (
        INSERT INTO public.proxy_lease_events_pruned AS t (event, reason, events)
        SELECT p.event, p.reason, count(*) FROM pruned p GROUP BY p.event, p.reason
            ON CONFLICT (event, reason) DO UPDATE SET events = t.events + excluded.events)
    SELECT count(*) INTO v_pruned FROM pruned;
    RETURN v_pruned;
END
$$;

COMMENT ON FUNCTION public.prune_lease_events(integer) IS
    'Deletes up to batch_size (default 50000) of the oldest proxy_lease_events older than '
    'proxy_lease_settings.event_retention and returns how many; nothing when event_retention is NULL. '
    'Run by the scheduled maintenance. Adds what it deleted, by event and reason, to proxy_lease_events_pruned. '
    'Runs as its owner; EXECUTE is not granted to PUBLIC. '
    'A batch_size below 1 raises 22023.';
