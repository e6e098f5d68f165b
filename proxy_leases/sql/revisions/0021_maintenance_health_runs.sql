-- Each run of run_lease_maintenance() leaves its own trace in the fleet's database: pg_cron's
-- cron.job_run_details lives in pg_cron's database, which the fleet's roles and dashboards usually
-- cannot read, and another scheduler keeps no history at all. A run's row is written when it starts
-- (and committed at once, so a run that dies midway is seen as started and never finished) and
-- completed when it ends. The table keeps the newest 1,440 runs (a day at one a minute): each run
-- deletes what falls out of that window, through the primary key.

CREATE TABLE public.proxy_lease_maintenance_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at       timestamptz,
    db_user           text NOT NULL DEFAULT session_user,
    requeued_tasks    integer,
    released_proxies  integer,
    unblocked_proxies integer,
    pruned_events     integer,
    failures          text[] NOT NULL DEFAULT '{}',
    CONSTRAINT proxy_lease_maintenance_runs_ends_after_start CHECK (finished_at >= started_at)
);

COMMENT ON TABLE public.proxy_lease_maintenance_runs IS
    'proxy-leases: the newest 1,440 runs of run_lease_maintenance(), one row each, whoever scheduled them. '
    'finished_at NULL: still running, or the run died (proxy_leases_health tells which).';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.started_at IS 'When the run began (clock_timestamp()).';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.finished_at IS
    'When its last step ended; NULL while it runs, and for ever if it died.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.db_user IS
    'The session user that ran it: pg_cron''s job owner, or the operator who called it.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.requeued_tasks IS
    'What requeue_stale_tasks() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.released_proxies IS
    'What release_stuck_proxies() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.unblocked_proxies IS
    'What unblock_cooled_down_proxies() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.pruned_events IS
    'What prune_lease_events() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.failures IS
    'One entry per failed step: "step(): message (SQLSTATE xxxxx)". Empty when every step succeeded.';
