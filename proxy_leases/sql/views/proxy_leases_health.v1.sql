-- Is proxy-leases doing its job? One row per check, each with what it saw, what it measured that
-- against, and what to do when it is not ok, for `proxy-leases check`, a probe or the exporter.
-- Everything it reads is in the fleet's database: never pg_cron's (cron.job_run_details lives there,
-- where the fleet's roles usually cannot look); the maintenance's own trace is
-- proxy_lease_maintenance_runs. docs/monitoring.md says what each check means.
--
-- Cost: one pass over proxies for the pool's checks (the counts of proxy_pool_status), the newest
-- maintenance runs by primary key, the advisory locks in pg_locks, and the oldest audit event by
-- its time index.

CREATE OR REPLACE VIEW public.proxy_leases_health AS
WITH settings AS (
    SELECT s.maintenance_period, s.free_pool_floor, s.quarantined_share_limit, s.event_retention,
           -- Late: no run started within two periods, with 30 s for pg_cron's start delay.
           2 * s.maintenance_period + interval '30 seconds' AS maintenance_late_after
      FROM public.proxy_lease_settings s),
-- A run holds this session advisory lock from its start to its end (run_lease_maintenance v3): the
-- newest run, unfinished, is still working while it is held, however long it takes.
alive AS (
    SELECT EXISTS (SELECT FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                         WHERE d.datname = pg_catalog.current_database())
                      AND l.classid = pg_catalog.hashtext('proxy_leases')::oid
                      AND l.objid = pg_catalog.hashtext('run_lease_maintenance')::oid) AS running),
last_run AS (
    SELECT r.id, r.started_at, r.finished_at IS NULL AND alive.running AS running
      FROM public.proxy_lease_maintenance_runs r, alive
     ORDER BY r.id DESC LIMIT 1),
-- The newest run that has ended, or should have: an unfinished one that is not the newest still
-- holding the lock has died (once a period has passed, for a run that has just begun).
last_outcome AS (
    SELECT r.id, r.started_at, r.finished_at, r.failures
      FROM public.proxy_lease_maintenance_runs r, settings
     WHERE r.finished_at IS NOT NULL
        OR (r.started_at < now() - settings.maintenance_period
            AND NOT (r.id = (SELECT l.id FROM last_run l) AND (SELECT l.running FROM last_run l)))
     ORDER BY r.id DESC LIMIT 1),
pool AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE p.is_in_use IS NOT TRUE AND p.is_blocked IS NOT TRUE) AS free,
           count(*) FILTER (WHERE p.is_blocked IS TRUE AND p.blocked_until IS NULL
                              AND starts_with(p.blocked_reason, 'quarantined after ')) AS quarantined,
           count(*) FILTER (WHERE p.is_in_use IS TRUE
                              AND p.leased_until < now() - (SELECT s.maintenance_period FROM settings s))
               AS held_past_lease,
           min(p.leased_until) FILTER (WHERE p.is_in_use IS TRUE) AS oldest_lease_end
      FROM public.proxies p),
oldest_event AS (
    SELECT min(e.occurred_at) AS occurred_at FROM public.proxy_lease_events e),
checks (position, name, ok, value, threshold, action) AS (
    SELECT 1, 'revision',
           public.proxy_leases_installed_revision() IS NOT DISTINCT FROM public.proxy_leases_head_revision(),
           coalesce(public.proxy_leases_installed_revision(), 'none recorded'),
           public.proxy_leases_head_revision(),
           'Run `proxy-leases upgrade` (or alembic upgrade head) with the proxy-leases that installed this view.'
    UNION ALL
    SELECT 2, 'maintenance_on_time',
           coalesce(last_run.started_at >= now() - settings.maintenance_late_after, false),
           CASE WHEN last_run.started_at IS NULL THEN 'no run recorded'
                WHEN last_run.running
                THEN format('run %s still running, started %s ago', last_run.id,
                            date_trunc('second', now() - last_run.started_at))
                ELSE format('last run started %s ago', date_trunc('second', now() - last_run.started_at)) END,
           format('a run within %s', settings.maintenance_late_after),
           'Nothing is running the maintenance: pg_cron''s job is gone or paused, or its scheduler stopped (the '
           'database in cron.database_name dropped, pg_cron out of shared_preload_libraries, a failover to a '
           'server without it); or a run is stuck (see pg_stat_activity). `proxy-leases sql --cron` prints the '
           'job; or CALL public.run_lease_maintenance() every maintenance_period from another scheduler. A '
           'schedule slower than maintenance_period needs that setting raised.'
      FROM settings LEFT JOIN last_run ON true
    UNION ALL
    SELECT 3, 'maintenance_succeeded',
           coalesce(last_outcome.finished_at IS NOT NULL AND cardinality(last_outcome.failures) = 0, false),
           CASE WHEN last_outcome.id IS NULL THEN 'no run recorded'
                WHEN last_outcome.finished_at IS NULL
                THEN format('run %s, started %s, never finished', last_outcome.id,
                            date_trunc('second', last_outcome.started_at))
                WHEN cardinality(last_outcome.failures) > 0
                THEN format('run %s failed: %s', last_outcome.id, array_to_string(last_outcome.failures, '; '))
                ELSE format('run %s succeeded', last_outcome.id) END,
           'every step succeeded',
           'Read the failure in proxy_lease_maintenance_runs.failures (and the server log); each step is retried '
           'by the next run. A run that never finished was killed, its server crashed, or it could not record '
           'its end (a WARNING in the server log).'
      FROM settings LEFT JOIN last_outcome ON true
    UNION ALL
    SELECT 4, 'no_proxy_held_past_lease',
           pool.held_past_lease = 0,
           CASE WHEN pool.held_past_lease = 0 THEN '0'
                ELSE format('%s, the oldest lease ended %s ago', pool.held_past_lease,
                            date_trunc('second', now() - pool.oldest_lease_end)) END,
           format('0 held more than %s past the lease', settings.maintenance_period),
           'The sweep is not freeing expired leases: see the maintenance checks, and SELECT * FROM stuck_proxies.'
      FROM pool, settings
    UNION ALL
    SELECT 5, 'free_pool_above_floor',
           settings.free_pool_floor IS NULL OR pool.free >= settings.free_pool_floor,
           format('%s free of %s', pool.free, pool.total),
           CASE WHEN settings.free_pool_floor IS NULL THEN 'off (free_pool_floor is NULL)'
                ELSE format('at least %s free', settings.free_pool_floor) END,
           'Workers are about to wait for proxies: SELECT * FROM proxy_pool_status and proxy_pool_by_container '
           'show where they are (held, blocked, stuck); add proxies, or unblock those blocked by mistake.'
      FROM pool, settings
    UNION ALL
    SELECT 6, 'quarantine_below_share',
           settings.quarantined_share_limit IS NULL
             OR pool.quarantined < settings.quarantined_share_limit * pool.total OR pool.total = 0,
           format('%s quarantined of %s', pool.quarantined, pool.total),
           CASE WHEN settings.quarantined_share_limit IS NULL THEN 'off (quarantined_share_limit is NULL)'
                ELSE format('below %s of the pool', settings.quarantined_share_limit) END,
           'Many proxies failed their workers several times in a row: check the proxies (or the sites they '
           'reach); unblock_proxy(id) returns one to the pool.'
      FROM pool, settings
    UNION ALL
    SELECT 7, 'audit_pruned',
           settings.event_retention IS NULL OR oldest_event.occurred_at IS NULL
             OR oldest_event.occurred_at >= now() - settings.event_retention - interval '1 day',
           CASE WHEN oldest_event.occurred_at IS NULL THEN 'no events'
                ELSE format('oldest event %s', date_trunc('second', oldest_event.occurred_at)) END,
           CASE WHEN settings.event_retention IS NULL THEN 'off (event_retention is NULL: kept for ever)'
                ELSE format('none older than event_retention (%s) and a day', settings.event_retention) END,
           'prune_lease_events() is not keeping up: see the maintenance checks; a long backlog can be pruned '
           'by calling SELECT prune_lease_events() until it returns 0.'
      FROM settings, oldest_event)
SELECT c.name, c.ok, c.value, c.threshold, c.action
  FROM checks c
 ORDER BY c.position;

COMMENT ON VIEW public.proxy_leases_health IS
    'proxy-leases checking itself, one row per check: revision (the database is at this package''s head), '
    'maintenance_on_time, maintenance_succeeded, no_proxy_held_past_lease, free_pool_above_floor, '
    'quarantine_below_share, audit_pruned. ok false: do what action says. docs/monitoring.md.';
COMMENT ON COLUMN public.proxy_leases_health.name IS 'The check.';
COMMENT ON COLUMN public.proxy_leases_health.ok IS 'Whether the check passes; never NULL.';
COMMENT ON COLUMN public.proxy_leases_health.value IS 'What the check saw, in words.';
COMMENT ON COLUMN public.proxy_leases_health.threshold IS 'What it was measured against (the setting that sets it).';
COMMENT ON COLUMN public.proxy_leases_health.action IS 'What to do when ok is false.';
