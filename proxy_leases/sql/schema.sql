-- proxy-leases at head (0022_self_healing): every object it installs, as a fresh database at head has it.
--
-- Generated, do not edit: run scripts/schema to regenerate it (tools/schema_file.py);
-- tests/behaviour/test_schema_file.py fails when it differs from what upgrade head makes. It is pg_dump
-- --schema-only --no-owner of PostgreSQL 15, of a database where `alembic upgrade head` ran
-- (cron=off), tidied. For reading, not for installing: it records no revision, makes none of an
-- upgrade's checks, and its order is a reader's. `proxy-leases upgrade` installs; `proxy-leases sql`
-- prints an install script.
--
-- The fleet's tables (proxies, catalog_tasks, object_tasks) are shown whole, with what proxy-leases
-- adds to them. Not here: the roles proxy_leases_worker and proxy_leases_operator, which belong to
-- the cluster (revision 0014_least_privilege makes them), and the pg_cron jobs, kept in pg_cron's
-- database.
--
-- Sections: tables and sequences, constraints, indexes, functions and procedures, triggers, views, rights.
-- Within each, pg_dump's order (by name, unless a dependency moves an object up); each object's
-- comments follow it, and its rights are in the last section (REVOKEs first, then GRANTs by role).


-- ---------------------------------------------------------------------------------------------------------
-- Tables and sequences
-- ---------------------------------------------------------------------------------------------------------

-- TABLE proxies
CREATE TABLE public.proxies (
    id bigint NOT NULL,
    address text NOT NULL,
    is_in_use boolean DEFAULT false NOT NULL,
    worker_id text,
    is_blocked boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    leased_at timestamp with time zone,
    leased_until timestamp with time zone,
    lease_token bigint,
    released_at timestamp with time zone,
    strike_count integer DEFAULT 0 NOT NULL,
    blocked_at timestamp with time zone,
    blocked_until timestamp with time zone,
    blocked_reason text,
    renewed_at timestamp with time zone,
    released_lease_token bigint,
    blocked_lease_token bigint,
    CONSTRAINT proxies_block_consistent CHECK (((is_blocked IS TRUE) OR ((blocked_at IS NULL) AND (blocked_until IS NULL) AND (blocked_reason IS NULL)))),
    CONSTRAINT proxies_lease_consistent CHECK (((is_in_use IS NOT NULL) AND (is_in_use = (worker_id IS NOT NULL)) AND (is_in_use = (leased_at IS NOT NULL)) AND (is_in_use = (leased_until IS NOT NULL)))),
    CONSTRAINT proxies_lease_token_consistent CHECK ((is_in_use = (lease_token IS NOT NULL)))
);

COMMENT ON TABLE public.proxies IS 'The shared proxy pool. A worker holds at most one proxy per task.';
COMMENT ON COLUMN public.proxies.address IS 'Where the proxy is reached, e.g. http://user:pass@host:port.';
COMMENT ON COLUMN public.proxies.is_in_use IS 'True while a worker holds the proxy.';
COMMENT ON COLUMN public.proxies.worker_id IS 'The holder, <container_id>_<n>; NULL when free.';
COMMENT ON COLUMN public.proxies.is_blocked IS 'Banned by a target site: never handed out, freed or not.';
COMMENT ON COLUMN public.proxies.leased_at IS 'When the current holder was granted the proxy; NULL when free.';
COMMENT ON COLUMN public.proxies.leased_until IS 'When the current lease ends unless renewed (any task heartbeat of the holder renews it); NULL when free.';
COMMENT ON COLUMN public.proxies.lease_token IS 'The fencing token of the current grant; NULL when free. Renewing, releasing or blocking needs it: a worker whose grant ended (expired, swept, granted again) holds a token that no longer matches.';
COMMENT ON COLUMN public.proxies.released_at IS 'When the proxy was last freed; NULL if never since proxy-leases was installed. acquire_proxy hands out the proxy free for the longest first.';
COMMENT ON COLUMN public.proxies.strike_count IS 'Strikes in a row: reclaimed from a dead worker (sweep, container clean-up, task requeued) or blocked. A clean release sets it back to 0; reaching quarantine_after_strikes blocks the proxy for good.';
COMMENT ON COLUMN public.proxies.blocked_at IS 'When the proxy was blocked; NULL when not blocked.';
COMMENT ON COLUMN public.proxies.blocked_until IS 'When a cooldown ends and the scheduled maintenance unblocks the proxy; NULL: blocked until unblock_proxy (or not blocked).';
COMMENT ON COLUMN public.proxies.blocked_reason IS 'Why the proxy is blocked, as given to block_proxy or by quarantine.';
COMMENT ON COLUMN public.proxies.renewed_at IS 'When the current grant began or was last renewed (by renew_proxy_lease, a task heartbeat or acquire_proxy): the holder''s last sign of life. NULL when free.';
COMMENT ON COLUMN public.proxies.released_lease_token IS 'proxy-leases: while the proxy is free, the lease_token of the grant that ended last; NULL while held, after an unblock, and before the first release since 0016. Kept by a trigger; block_proxy reads it.';
COMMENT ON COLUMN public.proxies.blocked_lease_token IS 'proxy-leases: while blocked, the lease_token named by the block_proxy call whose ban is in place (a retry of that call changes nothing); NULL for other blocks and while not blocked.';
COMMENT ON CONSTRAINT proxies_block_consistent ON public.proxies IS 'Block details (since, until, reason) exist only while the proxy is blocked.';
COMMENT ON CONSTRAINT proxies_lease_consistent ON public.proxies IS 'A proxy is either free (not in use, no worker, no lease) or held (in use, a worker, a lease).';
COMMENT ON CONSTRAINT proxies_lease_token_consistent ON public.proxies IS 'A held proxy has a fencing token; a free one has none.';

-- TABLE catalog_tasks
CREATE TABLE public.catalog_tasks (
    id bigint NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    worker_id text,
    heartbeat_at timestamp with time zone,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT catalog_tasks_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'done'::text, 'failed'::text])))
);

COMMENT ON TABLE public.catalog_tasks IS 'Catalog pages to scrape: pending -> processing -> done | failed.';
COMMENT ON COLUMN public.catalog_tasks.worker_id IS 'The worker processing the task, <container_id>_<n>.';
COMMENT ON COLUMN public.catalog_tasks.heartbeat_at IS 'Last sign of life of the worker processing the task.';

-- SEQUENCE catalog_tasks_id_seq
ALTER TABLE public.catalog_tasks ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.catalog_tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE object_tasks
CREATE TABLE public.object_tasks (
    id bigint NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    worker_id text,
    heartbeat_at timestamp with time zone,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT object_tasks_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'done'::text, 'failed'::text])))
);

COMMENT ON TABLE public.object_tasks IS 'Object pages to scrape: pending -> processing -> done | failed.';
COMMENT ON COLUMN public.object_tasks.worker_id IS 'The worker processing the task, <container_id>_<n>.';
COMMENT ON COLUMN public.object_tasks.heartbeat_at IS 'Last sign of life of the worker processing the task.';

-- SEQUENCE object_tasks_id_seq
ALTER TABLE public.object_tasks ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.object_tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- SEQUENCE proxies_id_seq
ALTER TABLE public.proxies ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.proxies_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE proxy_lease_events
CREATE TABLE public.proxy_lease_events (
    id bigint NOT NULL,
    occurred_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    proxy_id bigint NOT NULL,
    event text NOT NULL,
    reason text NOT NULL,
    worker_id text,
    lease_token bigint,
    leased_at timestamp with time zone,
    renewed_at timestamp with time zone,
    leased_until timestamp with time zone,
    detail text,
    db_user text DEFAULT SESSION_USER NOT NULL,
    CONSTRAINT proxy_lease_events_event_known CHECK ((event = ANY (ARRAY['granted'::text, 'released'::text, 'blocked'::text, 'unblocked'::text])))
);

COMMENT ON TABLE public.proxy_lease_events IS 'proxy-leases audit trail, append-only: every grant, release, block and unblock of a proxy, written in the transaction that made the change. Renewals are not logged. Rows older than proxy_lease_settings.event_retention are deleted by the scheduled maintenance (prune_lease_events).';
COMMENT ON COLUMN public.proxy_lease_events.id IS 'Increases with every event appended.';
COMMENT ON COLUMN public.proxy_lease_events.occurred_at IS 'When the change happened, on the database clock (the proxy''s leased_at, released_at or blocked_at).';
COMMENT ON COLUMN public.proxy_lease_events.proxy_id IS 'The proxy (proxies.id); kept after the proxy is deleted.';
COMMENT ON COLUMN public.proxy_lease_events.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_events.reason IS 'Why. granted: acquired | direct_update. released: released_by_worker | blocked_by_worker | task_finished | task_deleted | requeued | reassigned | lease_expired | orphaned | inconsistent | container_restart | blocked_while_held | taken_over | proxy_deleted | direct_update. blocked: blocked_by_worker | quarantined | direct_update. unblocked: cooldown_over | unblocked_by_operator | direct_update. See the README for each.';
COMMENT ON COLUMN public.proxy_lease_events.worker_id IS 'granted, released: the worker the grant was for.';
COMMENT ON COLUMN public.proxy_lease_events.lease_token IS 'granted, released: the grant''s fencing token.';
COMMENT ON COLUMN public.proxy_lease_events.leased_at IS 'granted, released: when the grant began.';
COMMENT ON COLUMN public.proxy_lease_events.renewed_at IS 'granted, released: the grant''s last renewal (its worker''s last sign of life), or its start.';
COMMENT ON COLUMN public.proxy_lease_events.leased_until IS 'granted, released: when the lease was to end.';
COMMENT ON COLUMN public.proxy_lease_events.detail IS 'blocked: the block reason (released by a block: the same); unblocked: the reason of the block that ended.';
COMMENT ON COLUMN public.proxy_lease_events.db_user IS 'The database role that made the change: the one set with SET ROLE, else the session''s user.';

-- TABLE proxy_lease_events_pruned
CREATE TABLE public.proxy_lease_events_pruned (
    event text NOT NULL,
    reason text NOT NULL,
    events bigint NOT NULL,
    CONSTRAINT proxy_lease_events_pruned_events_positive CHECK ((events > 0))
);

COMMENT ON TABLE public.proxy_lease_events_pruned IS 'proxy-leases: how many events prune_lease_events() has deleted from proxy_lease_events, by event and reason (see proxy_lease_event_totals).';
COMMENT ON COLUMN public.proxy_lease_events_pruned.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_events_pruned.reason IS 'The events'' reason (docs/watching.md, "Event reasons").';
COMMENT ON COLUMN public.proxy_lease_events_pruned.events IS 'How many such events were pruned, in all.';

-- SEQUENCE proxy_lease_events_id_seq
ALTER TABLE public.proxy_lease_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.proxy_lease_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE proxy_lease_maintenance_runs
CREATE TABLE public.proxy_lease_maintenance_runs (
    id bigint NOT NULL,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    finished_at timestamp with time zone,
    db_user text DEFAULT SESSION_USER NOT NULL,
    requeued_tasks integer,
    released_proxies integer,
    unblocked_proxies integer,
    pruned_events integer,
    failures text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT proxy_lease_maintenance_runs_ends_after_start CHECK ((finished_at >= started_at))
);

COMMENT ON TABLE public.proxy_lease_maintenance_runs IS 'proxy-leases: the newest 1,440 runs of run_lease_maintenance(), one row each, whoever scheduled them. finished_at NULL: still running, or the run died (proxy_leases_health tells which).';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.started_at IS 'When the run began (clock_timestamp()).';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.finished_at IS 'When its last step ended; NULL while it runs, and for ever if it died.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.db_user IS 'The session user that ran it: pg_cron''s job owner, or the operator who called it.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.requeued_tasks IS 'What requeue_stale_tasks() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.released_proxies IS 'What release_stuck_proxies() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.unblocked_proxies IS 'What unblock_cooled_down_proxies() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.pruned_events IS 'What prune_lease_events() returned; NULL if that step failed or the run did not get there.';
COMMENT ON COLUMN public.proxy_lease_maintenance_runs.failures IS 'One entry per failed step: "step(): message (SQLSTATE xxxxx)". Empty when every step succeeded.';

-- SEQUENCE proxy_lease_maintenance_runs_id_seq
ALTER TABLE public.proxy_lease_maintenance_runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.proxy_lease_maintenance_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE proxy_lease_settings
CREATE TABLE public.proxy_lease_settings (
    singleton boolean DEFAULT true NOT NULL,
    lease_duration interval DEFAULT '00:05:00'::interval NOT NULL,
    orphan_grace interval DEFAULT '00:01:00'::interval NOT NULL,
    heartbeat_timeout interval DEFAULT '00:05:00'::interval NOT NULL,
    quarantine_after_strikes integer DEFAULT 3,
    event_retention interval DEFAULT '30 days'::interval,
    record_lease_events boolean DEFAULT true NOT NULL,
    maintenance_period interval DEFAULT '00:01:00'::interval NOT NULL,
    free_pool_floor integer DEFAULT 20,
    quarantined_share_limit numeric DEFAULT 0.2,
    longest_lease interval DEFAULT '1 day'::interval NOT NULL,
    CONSTRAINT proxy_lease_settings_event_retention_positive CHECK ((event_retention > '00:00:00'::interval)),
    CONSTRAINT proxy_lease_settings_free_pool_floor_not_negative CHECK ((free_pool_floor >= 0)),
    CONSTRAINT proxy_lease_settings_grace_shorter_than_lease CHECK ((orphan_grace < lease_duration)),
    CONSTRAINT proxy_lease_settings_heartbeat_timeout_positive CHECK ((heartbeat_timeout > '00:00:00'::interval)),
    CONSTRAINT proxy_lease_settings_lease_duration_check CHECK ((lease_duration > '00:00:00'::interval)),
    CONSTRAINT proxy_lease_settings_longest_lease_covers_lease_duration CHECK (((longest_lease >= lease_duration) AND (longest_lease >= '01:00:00'::interval))),
    CONSTRAINT proxy_lease_settings_maintenance_period_positive CHECK ((maintenance_period > '00:00:00'::interval)),
    CONSTRAINT proxy_lease_settings_orphan_grace_check CHECK ((orphan_grace >= '00:00:00'::interval)),
    CONSTRAINT proxy_lease_settings_quarantine_positive CHECK ((quarantine_after_strikes > 0)),
    CONSTRAINT proxy_lease_settings_quarantined_share_limit_is_a_share CHECK (((quarantined_share_limit > (0)::numeric) AND (quarantined_share_limit <= (1)::numeric))),
    CONSTRAINT proxy_lease_settings_singleton_check CHECK (singleton)
);

COMMENT ON TABLE public.proxy_lease_settings IS 'proxy-leases settings: exactly one row. UPDATE it; it cannot be emptied.';
COMMENT ON COLUMN public.proxy_lease_settings.singleton IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN public.proxy_lease_settings.lease_duration IS 'How long a grant or a renewal keeps a proxy. A held proxy whose worker sends no heartbeat for this long is freed by the next sweep, whatever else holds.';
COMMENT ON COLUMN public.proxy_lease_settings.orphan_grace IS 'How long after acquiring a proxy a worker may go without a task in processing before the sweeper treats the proxy as orphaned. Covers workers that take the proxy first and the task second.';
COMMENT ON COLUMN public.proxy_lease_settings.heartbeat_timeout IS 'requeue_stale_tasks puts a task in processing back to pending once its heartbeat_at is this old (or NULL).';
COMMENT ON COLUMN public.proxy_lease_settings.quarantine_after_strikes IS 'A proxy reclaimed from dead workers or blocked this many times in a row, with no clean release in between, is blocked until unblock_proxy. NULL: never quarantine.';
COMMENT ON COLUMN public.proxy_lease_settings.event_retention IS 'How long proxy_lease_events keeps an event; the scheduled maintenance deletes older ones. NULL: keep them all.';
COMMENT ON COLUMN public.proxy_lease_settings.record_lease_events IS 'Whether grants, releases, blocks and unblocks are written to proxy_lease_events. false disables the audit triggers on proxies for every session (waits at most 5 s for the lock on proxies): writes get cheaper, and the trail, proxy_recoveries and proxy_recovery_by_hour miss what happens meanwhile.';
COMMENT ON COLUMN public.proxy_lease_settings.maintenance_period IS 'How often the scheduler calls run_lease_maintenance() (pg_cron''s job: every minute). proxy_leases_health reports the maintenance late when no run started within two periods and 30 seconds. Set it when you change the schedule.';
COMMENT ON COLUMN public.proxy_lease_settings.free_pool_floor IS 'proxy_leases_health reports the pool low when fewer proxies than this are free (neither held nor blocked). 20 suits a pool of 100 (the incident''s healthy pool had 29 free, its worst 13); NULL switches the check off.';
COMMENT ON COLUMN public.proxy_lease_settings.quarantined_share_limit IS 'proxy_leases_health reports too many quarantined proxies (blocked by the strike rule until unblock_proxy) when their share of the pool reaches this. 0.2 is a fifth; NULL switches the check off.';
COMMENT ON COLUMN public.proxy_lease_settings.longest_lease IS 'The furthest ahead a lease may end: a grant, a renewal or a direct UPDATE of proxies.leased_until beyond now + longest_lease, or an infinite one, is refused (acquire_proxy and renew_proxy_lease: 22023; any other write: 23514); a lease already longer when the setting is lowered keeps its end. At least lease_duration and an hour, at most 100 years. Bounds how long a dead worker''s proxy can stay held when nothing else frees it.';

-- SEQUENCE proxy_lease_token_seq
CREATE SEQUENCE public.proxy_lease_token_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

COMMENT ON SEQUENCE public.proxy_lease_token_seq IS 'proxy-leases: fencing tokens. Every grant of a proxy takes the next value, so a later grant of the same proxy always carries a larger token than any earlier one. Starts at the install time in microseconds, so tokens keep growing across a downgrade and a new upgrade.';

-- TABLE proxy_leases_adopted_tables
CREATE TABLE public.proxy_leases_adopted_tables (
    table_name text NOT NULL,
    created boolean NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE public.proxy_leases_adopted_tables IS 'Which fleet tables the proxy-leases baseline created (created = true) and which it found holding the user''s data (created = false). Downgrading the baseline drops only the tables it created.';

-- TABLE proxy_leases_alembic_version
CREATE TABLE public.proxy_leases_alembic_version (
    version_num character varying(32) NOT NULL
);


-- ---------------------------------------------------------------------------------------------------------
-- Constraints
-- ---------------------------------------------------------------------------------------------------------

-- CONSTRAINT catalog_tasks_pkey ON catalog_tasks
ALTER TABLE ONLY public.catalog_tasks
    ADD CONSTRAINT catalog_tasks_pkey PRIMARY KEY (id);

-- CONSTRAINT object_tasks_pkey ON object_tasks
ALTER TABLE ONLY public.object_tasks
    ADD CONSTRAINT object_tasks_pkey PRIMARY KEY (id);

-- CONSTRAINT proxies_address_key ON proxies
ALTER TABLE ONLY public.proxies
    ADD CONSTRAINT proxies_address_key UNIQUE (address);

-- CONSTRAINT proxies_pkey ON proxies
ALTER TABLE ONLY public.proxies
    ADD CONSTRAINT proxies_pkey PRIMARY KEY (id);

-- CONSTRAINT proxy_lease_events_pkey ON proxy_lease_events
ALTER TABLE ONLY public.proxy_lease_events
    ADD CONSTRAINT proxy_lease_events_pkey PRIMARY KEY (id);

-- CONSTRAINT proxy_lease_events_pruned_pkey ON proxy_lease_events_pruned
ALTER TABLE ONLY public.proxy_lease_events_pruned
    ADD CONSTRAINT proxy_lease_events_pruned_pkey PRIMARY KEY (event, reason);

-- CONSTRAINT proxy_lease_maintenance_runs_pkey ON proxy_lease_maintenance_runs
ALTER TABLE ONLY public.proxy_lease_maintenance_runs
    ADD CONSTRAINT proxy_lease_maintenance_runs_pkey PRIMARY KEY (id);

-- CONSTRAINT proxy_lease_settings_pkey ON proxy_lease_settings
ALTER TABLE ONLY public.proxy_lease_settings
    ADD CONSTRAINT proxy_lease_settings_pkey PRIMARY KEY (singleton);

-- CONSTRAINT proxy_leases_adopted_tables_pkey ON proxy_leases_adopted_tables
ALTER TABLE ONLY public.proxy_leases_adopted_tables
    ADD CONSTRAINT proxy_leases_adopted_tables_pkey PRIMARY KEY (table_name);

-- CONSTRAINT proxy_leases_alembic_version_pkc ON proxy_leases_alembic_version
ALTER TABLE ONLY public.proxy_leases_alembic_version
    ADD CONSTRAINT proxy_leases_alembic_version_pkc PRIMARY KEY (version_num);


-- ---------------------------------------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------------------------------------

-- INDEX catalog_tasks_processing_worker_idx
CREATE INDEX catalog_tasks_processing_worker_idx ON public.catalog_tasks USING btree (worker_id) WHERE (status = 'processing'::text);

COMMENT ON INDEX public.catalog_tasks_processing_worker_idx IS 'proxy-leases: which workers have a task in processing. Used by the release trigger and the sweeper.';

-- INDEX object_tasks_processing_worker_idx
CREATE INDEX object_tasks_processing_worker_idx ON public.object_tasks USING btree (worker_id) WHERE (status = 'processing'::text);

COMMENT ON INDEX public.object_tasks_processing_worker_idx IS 'proxy-leases: which workers have a task in processing. Used by the release trigger and the sweeper.';

-- INDEX proxies_cooldown_idx
CREATE INDEX proxies_cooldown_idx ON public.proxies USING btree (blocked_until) WHERE (blocked_until IS NOT NULL);

COMMENT ON INDEX public.proxies_cooldown_idx IS 'proxy-leases: blocked proxies with a cooldown, by its end. Read by unblock_cooled_down_proxies.';

-- INDEX proxies_free_rotation_idx
CREATE INDEX proxies_free_rotation_idx ON public.proxies USING btree (released_at NULLS FIRST, id) WHERE ((NOT is_in_use) AND (is_blocked IS NOT TRUE));

COMMENT ON INDEX public.proxies_free_rotation_idx IS 'proxy-leases: free, unblocked proxies, longest free first. acquire_proxy takes the first it can lock.';

-- INDEX proxies_held_worker_idx
CREATE INDEX proxies_held_worker_idx ON public.proxies USING btree (worker_id) WHERE (is_in_use OR (worker_id IS NOT NULL));

COMMENT ON INDEX public.proxies_held_worker_idx IS 'proxy-leases: the proxies held (or half-held, before the lease constraint is validated), by worker. The sweeper reads all of it, so a sweep costs what the proxies in use cost.';

-- INDEX proxy_lease_events_occurred_at_idx
CREATE INDEX proxy_lease_events_occurred_at_idx ON public.proxy_lease_events USING btree (occurred_at);

COMMENT ON INDEX public.proxy_lease_events_occurred_at_idx IS 'proxy-leases: events by time, oldest first for prune_lease_events.';

-- INDEX proxy_lease_events_proxy_idx
CREATE INDEX proxy_lease_events_proxy_idx ON public.proxy_lease_events USING btree (proxy_id, occurred_at);

COMMENT ON INDEX public.proxy_lease_events_proxy_idx IS 'proxy-leases: one proxy''s history ("who held proxy 17 at 03:12?").';

-- INDEX proxy_lease_events_reclaims_idx
CREATE INDEX proxy_lease_events_reclaims_idx ON public.proxy_lease_events USING btree (occurred_at) WHERE ((event = 'released'::text) AND (reason = ANY (ARRAY['lease_expired'::text, 'orphaned'::text, 'inconsistent'::text, 'container_restart'::text, 'requeued'::text, 'reassigned'::text, 'taken_over'::text])));

COMMENT ON INDEX public.proxy_lease_events_reclaims_idx IS 'proxy-leases: the reclaims from dead workers, which proxy_recoveries reads.';


-- ---------------------------------------------------------------------------------------------------------
-- Functions and procedures
-- ---------------------------------------------------------------------------------------------------------

-- FUNCTION acquire_proxy(text, interval)
CREATE FUNCTION public.acquire_proxy(worker_id text, lease interval DEFAULT NULL::interval) RETURNS TABLE(proxy_id bigint, address text, lease_token bigint, leased_until timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_settings public.proxy_lease_settings;
    v_longest  interval;
    v_lease  interval;
    v_locked bigint[];
    v_held   record;
    v_now    timestamptz;
    v_proxy  bigint;
    v_ran_out record;
    v_quarantined boolean;
    v_attempt integer;
BEGIN
    SELECT * INTO v_settings FROM public.proxy_lease_settings s;
    v_lease := coalesce(acquire_proxy.lease, v_settings.lease_duration);
    IF acquire_proxy.worker_id IS NULL OR acquire_proxy.worker_id !~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}_[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'malformed worker_id %', coalesce(quote_literal(left(acquire_proxy.worker_id, 200)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A worker id is <container_id>_<n>: 1 to 128 letters, digits, ".", ":" or "-", '
                           'starting with a letter or digit, then "_" and a number of at most 19 digits.',
                  HINT = 'Pass the calling worker''s own id, such as ''8b4f59aa_3'' (container 8b4f59aa, worker 3): '
                         'release_container_proxies(container_id) frees a container''s proxies by that prefix, '
                         'so every worker id must have it.';
    END IF;
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(v_lease) THEN
        RAISE EXCEPTION 'lease must be finite, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF v_lease <= interval '0'
       OR least(extract(year FROM v_lease), extract(month FROM v_lease), extract(day FROM v_lease),
                extract(epoch FROM v_lease - date_trunc('day', v_lease))) < 0 THEN
        RAISE EXCEPTION 'lease must be positive, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    -- longest_lease is at least an hour, so a shorter lease needs no look at it, and the call reads
    -- the new column only when asked for more: a call that a downgrade dropping the column overtakes
    -- (it found this version just before the commit) then fails only if it asked for hours.
    IF v_lease > interval '1 hour' THEN
        v_longest := (SELECT s.longest_lease FROM public.proxy_lease_settings s);
    END IF;
    IF v_lease > v_longest THEN
        RAISE EXCEPTION 'lease is too long, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The longest lease is longest_lease, %s: a lease that never ends hides its proxy '
                                  'from every reclaim.', v_longest),
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration, and renew while the work goes on.';
    END IF;
    -- Under a snapshot older than the advisory lock, a second call for the same worker would not
    -- see the first one's grant and would take a second proxy.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'acquire_proxy needs READ COMMITTED, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run SET TRANSACTION ISOLATION LEVEL READ COMMITTED first, or call it in autocommit '
                         'mode where default_transaction_isolation is read committed.';
    END IF;
    -- Valid, but a bare number is seconds: '30' is 00:00:30, not half an hour. Granted as asked.
    IF v_lease < v_settings.orphan_grace THEN
        RAISE WARNING 'lease % is shorter than orphan_grace (%)', v_lease, v_settings.orphan_grace
            USING ERRCODE = '01000',  -- warning
                  DETAIL = 'An interval written as a bare number is seconds. The lease is granted as asked, and ends '
                           'sooner than the time the database gives a new grant to start its task.',
                  HINT = format('If you meant minutes, write %s; NULL (or nothing) gives lease_duration (%s). '
                                'A lease this short on purpose draws this warning on every call.',
                                CASE WHEN extract(epoch FROM v_lease) = trunc(extract(epoch FROM v_lease))
                                     THEN format('''%s minutes''', trunc(extract(epoch FROM v_lease)))
                                     ELSE '''<n> minutes''' END,
                                v_settings.lease_duration);
    END IF;

    -- 1. What the worker holds, locked: this waits for any transaction that has one of these rows.
    SELECT array_agg(h.id) INTO v_locked
      FROM (SELECT h.id FROM public.proxies h
             WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
             ORDER BY h.id
               FOR UPDATE) h;

    -- 2. Two calls for a worker that holds nothing take turns here, so that both cannot grant.
    PERFORM pg_advisory_xact_lock(hashtext('proxy_leases.acquire_proxy'), hashtext(acquire_proxy.worker_id));

    -- 3. A proxy granted to the worker since step 1 (by a call that committed while this one waited)
    -- is locked too, but without waiting: waiting for a row while holding the advisory lock is the
    -- deadlock this order exists to prevent.
    IF EXISTS (SELECT FROM public.proxies h
                WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                  AND h.id <> ALL (coalesce(v_locked, '{}'))) THEN
        BEGIN
            PERFORM FROM public.proxies h
              WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                FOR UPDATE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'another transaction is changing the proxy of worker %', acquire_proxy.worker_id
                USING ERRCODE = 'lock_not_available',
                      DETAIL = 'The proxy was granted to this worker while this call waited, and is locked now.',
                      HINT = 'Retry acquire_proxy: it returns the grant the worker holds.';
        END;
    END IF;

    -- 4. Judged on the locked rows, against the clock after the waits. What the worker holds but
    -- may no longer use goes back first; a lease that ran out is a strike, as if the sweep freed it.
    v_now := clock_timestamp();
    FOR v_held IN SELECT h.id, h.leased_until, h.is_blocked
                    FROM public.proxies h
                   WHERE h.worker_id = acquire_proxy.worker_id AND h.is_in_use
                   ORDER BY h.leased_at, h.id LOOP
        IF v_held.leased_until <= v_now THEN
            PERFORM set_config('proxy_leases.event_reason', 'lease_expired', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
             WHERE p.id = v_held.id;
        ELSIF v_held.is_blocked IS TRUE THEN
            PERFORM set_config('proxy_leases.event_reason', 'blocked_while_held', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL
             WHERE p.id = v_held.id;
        ELSIF v_proxy IS NULL THEN
            v_proxy := v_held.id;
        END IF;
    END LOOP;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    IF v_proxy IS NULL THEN
        SELECT f.id INTO v_proxy
          FROM public.proxies f
         WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE
         ORDER BY f.released_at NULLS FIRST, f.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
    END IF;


    -- 5. None free: take over a proxy whose lease ran out, freed first as the sweep frees it. The
    -- row is judged once locked (a locked row that changed is re-checked against its new version and
    -- the clock) and, locked by this call, cannot change before its release. Its strike may
    -- quarantine it: then another, up to 4 per call.
    IF v_proxy IS NULL THEN
        FOR v_attempt IN 1..4 LOOP
            SELECT e.id, e.worker_id INTO v_ran_out
              FROM public.proxies e
             WHERE e.is_in_use AND e.leased_until <= clock_timestamp() AND e.is_blocked IS NOT TRUE
             LIMIT 1
               FOR UPDATE SKIP LOCKED;
            EXIT WHEN NOT FOUND;
            PERFORM set_config('proxy_leases.event_reason', 'lease_expired', true);
            UPDATE public.proxies p
               SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
             WHERE p.id = v_ran_out.id
            RETURNING p.is_blocked INTO v_quarantined;
            PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
            RAISE LOG 'acquire_proxy: no proxy was free for worker %; freed proxy % of worker %, whose lease ran out%',
                      acquire_proxy.worker_id, v_ran_out.id, v_ran_out.worker_id,
                      CASE WHEN v_quarantined IS TRUE THEN ' (quarantined by that strike)' ELSE '' END;
            IF v_quarantined IS NOT TRUE THEN
                v_proxy := v_ran_out.id;
                EXIT;
            END IF;
        END LOOP;
        IF v_proxy IS NULL THEN
            RETURN;
        END IF;
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'acquired', true);
    RETURN QUERY
    UPDATE public.proxies p
       SET is_in_use = true,
           worker_id = acquire_proxy.worker_id,
           leased_until = clock_timestamp() + v_lease
     WHERE p.id = v_proxy
    RETURNING p.id::bigint, public.proxy_address(p), p.lease_token, p.leased_until;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
END
$_$;

COMMENT ON FUNCTION public.acquire_proxy(worker_id text, lease interval) IS 'Grants the worker one free, unblocked proxy for lease (NULL: lease_duration) and returns (proxy_id, address, lease_token, leased_until); no row when none is free or can be taken over (LISTEN proxy_available). A worker that already holds a proxy gets that grant back, with the same token and its lease end set to now + lease, unless its lease ran out or it was blocked (judged after any wait): that goes back first. Hands out the proxy free for the longest first; the grant is logged in proxy_lease_events (reason acquired). Calls for different workers never wait for each other and never get the same proxy. When none is free, it takes over an unblocked one whose lease ran out, freed first as release_stuck_proxies would (strike, reason lease_expired; another, up to 4, when the strike quarantines it), so an exhausted pool heals without the scheduler. Malformed worker_id or a lease <= 0 or over longest_lease raise 22023; any isolation level but READ COMMITTED raises 0A000; 55P03 (retry) when a proxy granted to the worker during the call is locked by another transaction. A lease shorter than orphan_grace is granted as asked, with a WARNING: a bare number such as ''30'' is seconds. Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';

-- FUNCTION block_proxy(bigint, bigint)
CREATE FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RAISE EXCEPTION 'block_proxy(%, %) is missing the reason', coalesce(block_proxy.proxy_id::text, 'NULL'),
                    coalesce(block_proxy.lease_token::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A ban says why: the reason is kept with the proxy (blocked_reason) and in the audit trail, '
                       'and it is what an operator reads before unblocking it.',
              HINT = format('Call block_proxy(%s, %s, ''HTTP 403''), with what the site answered, and a cooldown '
                            'such as ''30 minutes'' as a fourth argument if the ban should end by itself.',
                            coalesce(block_proxy.proxy_id::text, 'NULL'), coalesce(block_proxy.lease_token::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint) IS 'Not an API: a ban without its reason raises 42883 with a hint showing block_proxy(proxy_id, lease_token, reason, cooldown). It reads and changes nothing. EXECUTE as for block_proxy(bigint, bigint, text, interval).';

-- FUNCTION block_proxy(bigint, text)
CREATE FUNCTION public.block_proxy(proxy_id bigint, reason text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RAISE EXCEPTION 'block_proxy(%, %) is missing the lease_token', coalesce(block_proxy.proxy_id::text, 'NULL'),
                    coalesce(quote_literal(left(block_proxy.reason, 200)), 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A ban names the grant, (proxy_id, lease_token): the proxy id alone could block a proxy '
                       'that another worker was granted since.',
              HINT = format('Call block_proxy(%s, <lease_token from acquire_proxy>, %s), with a cooldown such as '
                            '''30 minutes'' as a fourth argument if the ban should end by itself.',
                            coalesce(block_proxy.proxy_id::text, 'NULL'),
                            coalesce(quote_literal(left(block_proxy.reason, 200)), 'NULL'));
END
$$;

COMMENT ON FUNCTION public.block_proxy(proxy_id bigint, reason text) IS 'Not an API: a ban without its lease token raises 42883 with a hint showing block_proxy(proxy_id, lease_token, reason, cooldown). It reads and changes nothing. EXECUTE as for block_proxy(bigint, bigint, text, interval).';

-- FUNCTION block_proxy(bigint, bigint, text, interval)
CREATE FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text, cooldown interval DEFAULT NULL::interval) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_row   public.proxies;
    v_until timestamptz;
    v_keep_block boolean;
BEGIN
    IF block_proxy.proxy_id IS NULL OR block_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    IF block_proxy.reason IS NULL OR block_proxy.reason !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'a block needs a reason'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say what the site did, e.g. ''HTTP 403 from example.com''.';
    END IF;
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(block_proxy.cooldown) THEN
        RAISE EXCEPTION 'cooldown must be finite, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF block_proxy.cooldown <= interval '0'
       OR least(extract(year FROM block_proxy.cooldown), extract(month FROM block_proxy.cooldown), extract(day FROM block_proxy.cooldown),
                extract(epoch FROM block_proxy.cooldown - date_trunc('day', block_proxy.cooldown))) < 0 THEN
        RAISE EXCEPTION 'cooldown must be positive, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;
    IF block_proxy.cooldown > interval '100 years' THEN
        RAISE EXCEPTION 'cooldown is too long, got %', block_proxy.cooldown
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Intervals are limited to 100 years: longer ones overflow a timestamp, or are a typo.',
                  HINT = 'Pass NULL (or nothing) to block until unblock_proxy.';
    END IF;

    -- Locked, then judged: the row as it is after any wait, not as this call first saw it.
    SELECT * INTO v_row
      FROM public.proxies p
     WHERE p.id = block_proxy.proxy_id
       AND (p.lease_token = block_proxy.lease_token
            OR (p.lease_token IS NULL AND p.released_lease_token = block_proxy.lease_token))
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- The pair named no grant: arguments swapped raise, anything else returns false.
        PERFORM public.raise_if_lease_arguments_swapped(
            'block_proxy', block_proxy.proxy_id, block_proxy.lease_token, 'blocked',
            ', ' || quote_literal(left(block_proxy.reason, 200))
                 || CASE WHEN block_proxy.cooldown IS NULL THEN '' ELSE ', ' || quote_literal(block_proxy.cooldown::text) END);
        RETURN false;
    END IF;
    -- This ban is in place already: a retry after a lost reply changes nothing, and counts no
    -- second strike.
    IF v_row.is_blocked AND v_row.blocked_lease_token = block_proxy.lease_token THEN
        RETURN true;
    END IF;
    v_until := clock_timestamp() + block_proxy.cooldown;
    v_keep_block := v_row.is_blocked AND (v_row.blocked_until IS NULL OR v_row.blocked_until >= v_until);

    PERFORM set_config('proxy_leases.event_reason', 'blocked_by_worker', true);
    -- is_in_use and worker_id cleared: a release if the grant still holds the proxy, nothing if it is
    -- free. A ban never shortens a block in place (an operator's, another worker's): the later end
    -- wins, and no end is the latest.
    UPDATE public.proxies p
       SET is_in_use = false,
           worker_id = NULL,
           is_blocked = true,
           blocked_reason = CASE WHEN v_keep_block THEN p.blocked_reason ELSE left(block_proxy.reason, 1000) END,
           blocked_until = CASE WHEN v_keep_block THEN p.blocked_until ELSE v_until END,
           blocked_lease_token = block_proxy.lease_token,
           strike_count = p.strike_count + 1
     WHERE p.id = block_proxy.proxy_id;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN true;
END
$$;

COMMENT ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text, cooldown interval) IS 'Blocks the proxy with reason, for cooldown (then the scheduled maintenance unblocks it) or, cooldown NULL, until unblock_proxy, and counts a strike: releases the grant (proxy_id, lease_token) if it still holds the proxy, or blocks the free proxy if nobody was granted it since that grant ended. Returns true when the ban is recorded (a retry of the same ban changes nothing; a block already in place that ends later is kept); false, changing nothing, when the proxy was granted or unblocked since (or the token never named it). NULL ids, a blank reason, a cooldown <= 0 or over 100 years, or the two ids swapped (the hint shows the call in order) raise 22023. Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';

-- FUNCTION place_heartbeat_triggers()
CREATE FUNCTION public.place_heartbeat_triggers() RETURNS interval
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $_$
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
$_$;

COMMENT ON FUNCTION public.place_heartbeat_triggers() IS 'Rewrites the heartbeat triggers on catalog_tasks and object_tasks so that only the first heartbeat of a task in each renewal slot (a tenth of lease_duration) runs tg_tasks__renew_proxy_lease_on_heartbeat; returns the slot. Run by the settings trigger whenever lease_duration is set. Waits at most 5 s for the lock on each task table, then raises 55P03 and changes nothing. Runs as its owner; EXECUTE is granted to nobody.';

-- FUNCTION proxy_address(public.proxies)
CREATE FUNCTION public.proxy_address(proxy public.proxies) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT COALESCE(pg_catalog.to_jsonb(proxy) ->> 'address',
                    NULLIF(pg_catalog.concat_ws(':', pg_catalog.to_jsonb(proxy) ->> 'host',
                                                     pg_catalog.to_jsonb(proxy) ->> 'port'), ''))
$$;

COMMENT ON FUNCTION public.proxy_address(proxy public.proxies) IS 'How a worker reaches the proxy, as acquire_proxy returns it: the row''s address column, else host:port, else NULL. Replace it to suit the fleet''s columns.';

-- FUNCTION proxy_leases_head_revision()
CREATE FUNCTION public.proxy_leases_head_revision() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT text '0022_self_healing'
$$;

COMMENT ON FUNCTION public.proxy_leases_head_revision() IS 'The head revision of the proxy-leases that installed this function: 0022_self_healing.';

-- FUNCTION proxy_leases_installed_revision()
CREATE FUNCTION public.proxy_leases_installed_revision() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_table    regclass;
    v_revision text;
BEGIN
    SELECT c.oid INTO v_table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = 'proxy_leases_alembic_version' AND c.relkind IN ('r', 'p')
       AND c.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
       AND c.relpersistence <> 't'
     ORDER BY n.nspname <> 'public', n.nspname
     LIMIT 1;
    IF v_table IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT min(version_num::text) FROM %s', v_table) INTO v_revision;
    RETURN v_revision;
END
$$;

COMMENT ON FUNCTION public.proxy_leases_installed_revision() IS 'The revision recorded in proxy_leases_alembic_version (NULL when there is none), readable by whoever may call this (proxy_leases_operator, pg_monitor).';

-- FUNCTION prune_lease_events(integer)
CREATE FUNCTION public.prune_lease_events(batch_size integer DEFAULT 50000) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

COMMENT ON FUNCTION public.prune_lease_events(batch_size integer) IS 'Deletes up to batch_size (default 50000) of the oldest proxy_lease_events older than proxy_lease_settings.event_retention and returns how many; nothing when event_retention is NULL. Run by the scheduled maintenance. Adds what it deleted, by event and reason, to proxy_lease_events_pruned. Runs as its owner; EXECUTE is not granted to PUBLIC. A batch_size below 1 raises 22023.';

-- FUNCTION raise_if_lease_arguments_swapped(text, bigint, bigint, text, text)
CREATE FUNCTION public.raise_if_lease_arguments_swapped(called text, proxy_id bigint, lease_token bigint, undone text, rest_of_call text DEFAULT ''::text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_swapped public.proxies;
BEGIN
    SELECT * INTO v_swapped
      FROM public.proxies s
     WHERE s.id = raise_if_lease_arguments_swapped.lease_token
       AND (s.lease_token = raise_if_lease_arguments_swapped.proxy_id
            OR (s.lease_token IS NULL AND s.released_lease_token = raise_if_lease_arguments_swapped.proxy_id)
            OR (raise_if_lease_arguments_swapped.proxy_id >= 1000000000000000
                AND NOT EXISTS (SELECT FROM public.proxies p WHERE p.id = raise_if_lease_arguments_swapped.proxy_id)));
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'proxy_id % and lease_token % look swapped', raise_if_lease_arguments_swapped.proxy_id,
                    raise_if_lease_arguments_swapped.lease_token
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = CASE WHEN v_swapped.lease_token = raise_if_lease_arguments_swapped.proxy_id
                            THEN format('Proxy %s is held under lease token %s.', v_swapped.id, v_swapped.lease_token)
                            WHEN v_swapped.lease_token IS NULL
                                 AND v_swapped.released_lease_token = raise_if_lease_arguments_swapped.proxy_id
                            THEN format('Proxy %s was last granted under lease token %s.',
                                        v_swapped.id, v_swapped.released_lease_token)
                            ELSE format('There is no proxy %s, and %s is a proxy''s id.',
                                        raise_if_lease_arguments_swapped.proxy_id, v_swapped.id)
                       END || format(' Nothing was %s.', raise_if_lease_arguments_swapped.undone),
              HINT = format('Call %s(%s, %s%s): the proxy id first, then the lease token.',
                            raise_if_lease_arguments_swapped.called, raise_if_lease_arguments_swapped.lease_token,
                            raise_if_lease_arguments_swapped.proxy_id, raise_if_lease_arguments_swapped.rest_of_call);
END
$$;

COMMENT ON FUNCTION public.raise_if_lease_arguments_swapped(called text, proxy_id bigint, lease_token bigint, undone text, rest_of_call text) IS 'For release_proxy, renew_proxy_lease and block_proxy, once their (proxy_id, lease_token) named no grant: raises 22023 "look swapped", with the call in order in the hint, when the token given is a proxy''s id whose grant has the proxy id given as its token, or the proxy id given is no proxy''s and is as large as a token (10^15 or more); returns otherwise. Only reads. Not executable by PUBLIC.';

-- FUNCTION release_container_proxies(text)
CREATE FUNCTION public.release_container_proxies(container_id text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_prefix text;
    v_freed   integer;
    v_ids     bigint[];
    v_workers text[];
BEGIN
    IF release_container_proxies.container_id IS NULL OR release_container_proxies.container_id = '' THEN
        RAISE EXCEPTION 'container_id must not be NULL or empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of the container that is starting, as in its worker ids <container_id>_<n>.';
    END IF;
    IF release_container_proxies.container_id !~ '^[A-Za-z0-9][A-Za-z0-9.:-]{0,127}$' THEN
        RAISE EXCEPTION 'malformed container_id %', quote_literal(left(release_container_proxies.container_id, 200))
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A container id is 1 to 128 letters, digits, ".", ":" or "-", starting with a letter or digit.',
                  HINT = 'Pass the container part of a worker id (8b4f59aa for worker 8b4f59aa_3), '
                         'not a pattern: "_" and "%" are not allowed.';
    END IF;

    v_prefix := release_container_proxies.container_id || '_';

    -- Rows another transaction has locked are skipped, not waited for: that transaction is changing
    -- them now (the heartbeat manager requeueing this container's tasks frees them itself), and
    -- waiting while holding the rows locked so far could deadlock with it. Whatever it leaves held
    -- by this container's dead workers, the sweeper frees.
    SELECT array_agg(h.id ORDER BY h.id), array_agg(DISTINCT h.worker_id)
      INTO v_ids, v_workers
      FROM (SELECT h.id, h.worker_id
              FROM public.proxies h
             WHERE (h.is_in_use OR h.worker_id IS NOT NULL)
               AND starts_with(h.worker_id, v_prefix)
             ORDER BY h.id
               FOR UPDATE SKIP LOCKED) h;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'container_restart', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
     WHERE p.id = ANY (v_ids);
    GET DIAGNOSTICS v_freed = ROW_COUNT;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    RAISE LOG 'release_container_proxies: freed % proxies of restarted container % held by % worker(s): %',
              v_freed, release_container_proxies.container_id, cardinality(v_workers),
              -- The worker part after the prefix is the fleet's text: no line break reaches the log.
              regexp_replace(array_to_string(v_workers[1:20], ', '), '[[:cntrl:]]', '?', 'g') || CASE WHEN cardinality(v_workers) > 20
                                                          THEN format(' and %s more', cardinality(v_workers) - 20)
                                                          ELSE '' END;
    RETURN v_freed;
END
$_$;

COMMENT ON FUNCTION public.release_container_proxies(container_id text) IS 'Frees every proxy held by a worker <container_id>_* and returns how many. Call it when a container starts, before its workers take proxies. Never waits: a row another transaction has locked is left to it (and to the sweeper). Each freed proxy gets a strike and a released event (reason container_restart); freeing any writes one LOG line. NULL, empty or malformed ids (a "_", "%", spaces, over 128 characters) raise 22023 and free nothing. Runs as its owner; EXECUTE is granted to proxy_leases_operator.';

-- FUNCTION release_proxy(bigint)
CREATE FUNCTION public.release_proxy(proxy_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RAISE EXCEPTION 'release_proxy(%) is missing the lease_token', coalesce(release_proxy.proxy_id::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A release names the grant, (proxy_id, lease_token): the proxy id alone could free a proxy '
                       'that another worker holds now.',
              HINT = format('Call release_proxy(%s, <lease_token from acquire_proxy>).',
                            coalesce(release_proxy.proxy_id::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.release_proxy(proxy_id bigint) IS 'Not an API: a release without its lease token raises 42883 with a hint showing release_proxy(proxy_id, lease_token). It reads and changes nothing. EXECUTE as for release_proxy(bigint, bigint).';

-- FUNCTION release_proxy(bigint, bigint)
CREATE FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_leased_until timestamptz;
BEGIN
    IF release_proxy.proxy_id IS NULL OR release_proxy.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;

    SELECT p.leased_until INTO v_leased_until
      FROM public.proxies p
     WHERE p.id = release_proxy.proxy_id AND p.lease_token = release_proxy.lease_token AND p.is_in_use
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- The pair named no grant: arguments swapped raise, anything else returns false.
        PERFORM public.raise_if_lease_arguments_swapped('release_proxy', release_proxy.proxy_id,
                                                        release_proxy.lease_token, 'released');
        RETURN false;
    END IF;
    IF v_leased_until IS NULL OR v_leased_until <= clock_timestamp() THEN
        RETURN false;
    END IF;

    PERFORM set_config('proxy_leases.event_reason', 'released_by_worker', true);
    UPDATE public.proxies p
       SET is_in_use = false, worker_id = NULL
     WHERE p.id = release_proxy.proxy_id;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN true;
END
$$;

COMMENT ON FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint) IS 'Frees the grant (proxy_id, lease_token) and returns true; a clean release clears the proxy''s strikes. Returns false and changes nothing when the token no longer holds (lease run out, released, swept, granted again), judged after waiting for the row. NULL arguments, or the two ids swapped (the hint shows the call in order), raise 22023. Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';

-- FUNCTION release_stuck_proxies()
CREATE FUNCTION public.release_stuck_proxies() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_ids     bigint[];
    v_workers text[];
    v_reasons text[];
    v_reason  text;
    v_count   integer;
    v_freed   integer := 0;
    v_counts  text[] := '{}';
BEGIN
    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.worker_id ORDER BY s.id), array_agg(s.reason ORDER BY s.id)
      INTO v_ids, v_workers, v_reasons
      FROM (SELECT s.id, s.worker_id, s.reason
              FROM public.stuck_proxies s
             ORDER BY s.id
               FOR UPDATE SKIP LOCKED) s;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.worker_id ORDER BY s.id), array_agg(s.reason ORDER BY s.id)
      INTO v_ids, v_workers, v_reasons
      FROM public.stuck_proxies s
     WHERE s.id = ANY (v_ids);
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    FOREACH v_reason IN ARRAY ARRAY['lease_expired', 'orphaned', 'inconsistent'] LOOP
        CONTINUE WHEN NOT v_reason = ANY (v_reasons);
        PERFORM set_config('proxy_leases.event_reason', v_reason, true);
        UPDATE public.proxies p
           SET is_in_use = false, worker_id = NULL, strike_count = p.strike_count + 1
         WHERE p.id = ANY (ARRAY(SELECT u.id FROM unnest(v_ids, v_reasons) AS u(id, reason) WHERE u.reason = v_reason));
        GET DIAGNOSTICS v_count = ROW_COUNT;
        v_freed := v_freed + v_count;
        v_counts := v_counts || format('%s %s', v_reason, v_count);
    END LOOP;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);

    RAISE LOG 'release_stuck_proxies: freed % stuck proxies (%) held by %', v_freed,
              array_to_string(v_counts, ', '), public.summarize_proxy_holders(v_workers);
    RETURN v_freed;
END
$$;

COMMENT ON FUNCTION public.release_stuck_proxies() IS 'Frees every proxy in stuck_proxies and returns how many: leases that expired; proxies whose worker has no task in processing, once orphan_grace has passed since the grant; rows that break the lease rule. Each freed proxy gets a strike (see quarantine_after_strikes) and a released event with that reason in proxy_lease_events; a sweep that frees any writes one LOG line with the count and the containers. Blocked proxies stay blocked. Never waits on a locked row and never frees a live grant: the rows it locked are judged again against the task tables as they are then. Run by the scheduled maintenance; safe to call from anywhere, at any time, concurrently. Runs as its owner; EXECUTE is granted to proxy_leases_operator.';

-- FUNCTION renew_proxy_lease(bigint)
CREATE FUNCTION public.renew_proxy_lease(proxy_id bigint) RETURNS timestamp with time zone
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    RAISE EXCEPTION 'renew_proxy_lease(%) is missing the lease_token', coalesce(renew_proxy_lease.proxy_id::text, 'NULL')
        USING ERRCODE = 'undefined_function',
              DETAIL = 'A renewal names the grant, (proxy_id, lease_token): the token is how a worker learns '
                       'that it lost the lease.',
              HINT = format('Call renew_proxy_lease(%s, <lease_token from acquire_proxy>), with a lease such as '
                            '''5 minutes'' as a third argument, or none for lease_duration.',
                            coalesce(renew_proxy_lease.proxy_id::text, 'NULL'));
END
$$;

COMMENT ON FUNCTION public.renew_proxy_lease(proxy_id bigint) IS 'Not an API: a renewal without its lease token raises 42883 with a hint showing renew_proxy_lease(proxy_id, lease_token, lease). It reads and changes nothing. EXECUTE as for renew_proxy_lease(bigint, bigint, interval).';

-- FUNCTION renew_proxy_lease(bigint, bigint, interval)
CREATE FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval DEFAULT NULL::interval) RETURNS timestamp with time zone
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_settings public.proxy_lease_settings;
    v_longest  interval;
    v_lease    interval;
    v_now      timestamptz;
    v_until    timestamptz;
    v_row      public.proxies;
BEGIN
    SELECT * INTO v_settings FROM public.proxy_lease_settings s;
    v_lease := coalesce(renew_proxy_lease.lease, v_settings.lease_duration);
    IF renew_proxy_lease.proxy_id IS NULL OR renew_proxy_lease.lease_token IS NULL THEN
        RAISE EXCEPTION 'proxy_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass what acquire_proxy returned.';
    END IF;
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(v_lease) THEN
        RAISE EXCEPTION 'lease must be finite, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF v_lease <= interval '0'
       OR least(extract(year FROM v_lease), extract(month FROM v_lease), extract(day FROM v_lease),
                extract(epoch FROM v_lease - date_trunc('day', v_lease))) < 0 THEN
        RAISE EXCEPTION 'lease must be positive, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration.';
    END IF;
    -- longest_lease is at least an hour, so a shorter lease needs no look at it, and the call reads
    -- the new column only when asked for more: a call that a downgrade dropping the column overtakes
    -- (it found this version just before the commit) then fails only if it asked for hours.
    IF v_lease > interval '1 hour' THEN
        v_longest := (SELECT s.longest_lease FROM public.proxy_lease_settings s);
    END IF;
    IF v_lease > v_longest THEN
        RAISE EXCEPTION 'lease is too long, got %', v_lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The longest lease is longest_lease, %s: a lease that never ends hides its proxy '
                                  'from every reclaim.', v_longest),
                  HINT = 'Pass NULL (or nothing) for the configured lease_duration, and renew while the work goes on.';
    END IF;
    -- Valid, but a bare number is seconds: '30' is 00:00:30, not half an hour. Granted as asked.
    IF v_lease < v_settings.orphan_grace THEN
        RAISE WARNING 'lease % is shorter than orphan_grace (%)', v_lease, v_settings.orphan_grace
            USING ERRCODE = '01000',  -- warning
                  DETAIL = 'An interval written as a bare number is seconds. The lease is set as asked, and ends '
                           'sooner than the time the database gives a new grant to start its task.',
                  HINT = format('If you meant minutes, write %s; NULL (or nothing) gives lease_duration (%s). '
                                'A lease this short on purpose draws this warning on every call.',
                                CASE WHEN extract(epoch FROM v_lease) = trunc(extract(epoch FROM v_lease))
                                     THEN format('''%s minutes''', trunc(extract(epoch FROM v_lease)))
                                     ELSE '''<n> minutes''' END,
                                v_settings.lease_duration);
    END IF;

    SELECT * INTO v_row
      FROM public.proxies p
     WHERE p.id = renew_proxy_lease.proxy_id AND p.lease_token = renew_proxy_lease.lease_token
       FOR NO KEY UPDATE;
    v_now := clock_timestamp();

    IF v_row.is_in_use AND v_row.is_blocked IS NOT TRUE AND v_row.leased_until > v_now THEN
        UPDATE public.proxies p
           SET leased_until = v_now + v_lease
         WHERE p.id = renew_proxy_lease.proxy_id
        RETURNING p.leased_until INTO v_until;
        RETURN v_until;
    END IF;

    IF v_row.id IS NULL THEN
        SELECT * INTO v_row FROM public.proxies p WHERE p.id = renew_proxy_lease.proxy_id;
        -- The pair named no grant: arguments swapped raise 22023 rather than LP001 below.
        PERFORM public.raise_if_lease_arguments_swapped(
            'renew_proxy_lease', renew_proxy_lease.proxy_id, renew_proxy_lease.lease_token, 'renewed',
            CASE WHEN renew_proxy_lease.lease IS NULL THEN '' ELSE ', ' || quote_literal(renew_proxy_lease.lease::text) END);
    END IF;
    RAISE EXCEPTION 'lease % on proxy % no longer holds', renew_proxy_lease.lease_token, renew_proxy_lease.proxy_id
        USING ERRCODE = 'LP001',
              DETAIL = CASE
                  WHEN v_row.id IS NULL THEN 'There is no proxy with that id.'
                  WHEN v_row.lease_token IS NULL THEN 'The proxy is free: it was released or swept.'
                  WHEN v_row.lease_token <> renew_proxy_lease.lease_token
                      THEN 'The proxy is held under another token: it was granted again since.'
                  WHEN v_row.is_blocked
                      THEN format('The proxy was blocked since: %s', coalesce(v_row.blocked_reason, 'no reason given'))
                  ELSE format('The lease ran out at %s.', v_row.leased_until)
              END,
              HINT = 'Stop using this proxy now and call acquire_proxy for another.';
END
$$;

COMMENT ON FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval) IS 'Sets the lease end of the grant (proxy_id, lease_token) to now + lease (NULL: lease_duration), earlier than before if lease is shorter, and returns the new leased_until. A token that no longer holds (lease run out, released, swept, granted again, proxy blocked since), judged after waiting for the row, renews nothing and raises SQLSTATE LP001: stop using the proxy. NULL arguments, a lease <= 0 or over longest_lease, or the two ids swapped (the hint shows the call in order) raise 22023. A lease shorter than orphan_grace is set as asked, with a WARNING: a bare number such as ''30'' is seconds. Runs as its owner; EXECUTE is granted to proxy_leases_worker and proxy_leases_operator.';

-- FUNCTION requeue_stale_tasks(interval)
CREATE FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval DEFAULT NULL::interval) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
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
    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no length at all, and the checks below would fail on them with 22008.
    IF NOT isfinite(v_timeout) THEN
        RAISE EXCEPTION 'heartbeat_timeout must be finite, got %', v_timeout
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for proxy_lease_settings.heartbeat_timeout.';
    END IF;
    -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
    -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
    IF v_timeout <= interval '0'
       OR least(extract(year FROM v_timeout), extract(month FROM v_timeout), extract(day FROM v_timeout),
                extract(epoch FROM v_timeout - date_trunc('day', v_timeout))) < 0 THEN
        RAISE EXCEPTION 'heartbeat_timeout must be positive, got %', v_timeout
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (or nothing) for proxy_lease_settings.heartbeat_timeout.';
    END IF;
    IF v_timeout > interval '100 years' THEN
        RAISE EXCEPTION 'heartbeat_timeout is too long, got %', v_timeout
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Intervals are limited to 100 years: longer ones overflow a timestamp, or are a typo.',
                  HINT = 'Pass NULL (or nothing) for proxy_lease_settings.heartbeat_timeout.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'requeue_stale_tasks needs READ COMMITTED, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call it in autocommit mode, or after SET TRANSACTION ISOLATION LEVEL READ COMMITTED, as '
                         'run_lease_maintenance does. To requeue in a transaction of your own at this level, '
                         'UPDATE the task tables yourself: the release trigger frees the proxies.';
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
$_$;

COMMENT ON FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval) IS 'Moves tasks in processing whose heartbeat_at is older than heartbeat_timeout (NULL: the setting), or NULL, back to pending with worker_id NULL, in catalog_tasks and object_tasks, and returns how many. The release trigger frees their workers'' proxies (a strike each). Never waits on a locked row. A row the fleet''s own rules refuse stays in processing, named in a WARNING; the others are still requeued. Run by run_lease_maintenance. A timeout <= 0 or over 100 years raises 22023; any isolation level but READ COMMITTED raises 0A000. Runs as its owner; EXECUTE is granted to proxy_leases_operator.';

-- PROCEDURE run_lease_maintenance(integer, integer, integer)
CREATE PROCEDURE public.run_lease_maintenance(INOUT requeued_tasks integer DEFAULT NULL::integer, INOUT released_proxies integer DEFAULT NULL::integer, INOUT unblocked_proxies integer DEFAULT NULL::integer)
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

COMMENT ON PROCEDURE public.run_lease_maintenance(INOUT requeued_tasks integer, INOUT released_proxies integer, INOUT unblocked_proxies integer) IS 'The scheduled job (CALL run_lease_maintenance(), outside a transaction block): requeue_stale_tasks, release_stuck_proxies, unblock_cooled_down_proxies, prune_lease_events, each committed on its own; returns the first three counts and, when any of the four is above 0, writes them all in one LOG line. If a step fails the others still run and commit, and the call then raises the first error, every failure in DETAIL. Each run is recorded in proxy_lease_maintenance_runs (a failure to record is only a WARNING).';

-- FUNCTION summarize_proxy_holders(text[])
CREATE FUNCTION public.summarize_proxy_holders(worker_ids text[]) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN (
        SELECT format('%s container(s): %s%s', count(*),
                      string_agg(format('%s (%s)', c.container_id, c.proxies), ', '
                                 ORDER BY c.proxies DESC, c.container_id) FILTER (WHERE c.rank <= 20),
                      CASE WHEN count(*) > 20 THEN format(' and %s more', count(*) - 20) ELSE '' END)
          FROM (SELECT h.container_id, count(*) AS proxies,
                       row_number() OVER (ORDER BY count(*) DESC, h.container_id) AS rank
                  -- A worker id is the fleet's text: a line break in one must not start a forged log line.
                  FROM (SELECT coalesce(regexp_replace(split_part(w.worker_id, '_', 1), '[[:cntrl:]]', '?', 'g'),
                                        '(no worker)') AS container_id
                          FROM unnest(worker_ids) AS w(worker_id)) h
                 GROUP BY h.container_id) c);
END
$$;

COMMENT ON FUNCTION public.summarize_proxy_holders(worker_ids text[]) IS 'Given the worker ids of freed proxies, says which containers held them: "2 container(s): 8b4f59aa (15), e1bf8c63 (1)", most proxies first, at most 20 named. A container is the part of a worker id before the first "_"; control characters in it are shown as "?". Used by the LOG lines of release_stuck_proxies and release_container_proxies.';

-- FUNCTION tg_proxies__announce_available()
CREATE FUNCTION public.tg_proxies__announce_available() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF (SELECT count(*)
          FROM (SELECT FROM public.proxies f
                 WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE AND f.id <> NEW.id
                 LIMIT 16) AS others_free) < 16 THEN
        PERFORM pg_notify('proxy_available', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__announce_available() IS 'Trigger on proxies: NOTIFY proxy_available, payload the proxy id, when a proxy becomes free and unblocked (released, unblocked) while fewer than 16 other proxies are free.';

-- FUNCTION tg_proxies__announce_inserted()
CREATE FUNCTION public.tg_proxies__announce_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_first bigint := (SELECT min(n.id) FROM inserted n WHERE NOT n.is_in_use AND n.is_blocked IS NOT TRUE);
BEGIN
    IF v_first IS NOT NULL THEN
        PERFORM pg_notify('proxy_available', v_first::text);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__announce_inserted() IS 'Statement trigger on proxies: one NOTIFY proxy_available per INSERT that adds free, unblocked proxies, with the smallest such id as payload.';

-- FUNCTION tg_proxies__keep_lease_consistent()
CREATE FUNCTION public.tg_proxies__keep_lease_consistent() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    v_now         timestamptz := clock_timestamp();
    v_was_held    boolean := TG_OP = 'UPDATE' AND OLD.is_in_use IS TRUE AND OLD.worker_id IS NOT NULL;
    v_was_blocked boolean := TG_OP = 'UPDATE' AND OLD.is_blocked IS TRUE;
    v_quarantine  integer;
    v_longest     interval;
BEGIN
    IF NEW.is_in_use IS TRUE AND NEW.worker_id IS NOT NULL THEN
        IF NOT v_was_held OR NEW.worker_id IS DISTINCT FROM OLD.worker_id THEN
            IF v_was_held AND OLD.leased_until > v_now THEN
                RAISE EXCEPTION 'proxy % is held by % under a live lease; % cannot take it', NEW.id, OLD.worker_id,
                                NEW.worker_id
                    USING ERRCODE = 'object_in_use',
                          DETAIL = format('The lease runs until %s.', OLD.leased_until),
                          HINT = 'Take only free proxies: call acquire_proxy($1), or add AND NOT is_in_use to the '
                                 'UPDATE that takes one. Release a proxy before giving it to another worker.';
            END IF;
            -- Taken over from a holder whose lease ran out: a reclaim from a dead worker, as in a sweep.
            IF v_was_held AND NEW.strike_count IS NOT DISTINCT FROM OLD.strike_count THEN
                NEW.strike_count := OLD.strike_count + 1;
            END IF;
            NEW.lease_token := nextval('public.proxy_lease_token_seq');
            NEW.leased_at := v_now;
            NEW.released_lease_token := NULL;
            NEW.renewed_at := v_now;
            -- A lease end carried over from the previous holder is not one the caller chose.
            IF TG_OP = 'UPDATE' AND NEW.leased_until IS NOT DISTINCT FROM OLD.leased_until THEN
                NEW.leased_until := NULL;
            END IF;
        ELSE
            -- Held since before tokens existed: the backfill (or this write) gives it one.
            NEW.lease_token := coalesce(OLD.lease_token, NEW.lease_token, nextval('public.proxy_lease_token_seq'));
            -- A new lease end still ahead is a renewal, shorter or longer (a worker that acquired for
            -- an hour renews for the default five minutes); one in the past is an expiry, not a sign
            -- of life; none (NULL) gets the default lease below.
            NEW.renewed_at := CASE WHEN NEW.leased_until IS NULL
                                        OR (NEW.leased_until IS DISTINCT FROM OLD.leased_until
                                            AND NEW.leased_until > v_now) THEN v_now
                                   ELSE coalesce(OLD.renewed_at, OLD.leased_at) END;
        END IF;
        IF NEW.leased_until IS NULL THEN
            NEW.leased_until := v_now + (SELECT s.lease_duration FROM public.proxy_lease_settings s);
        -- longest_lease is at least an hour: a finite lease ending within the hour needs no read of the
        -- settings. '-infinity' is refused too: the views' arithmetic on it fails before PostgreSQL 17.
        ELSIF (TG_OP = 'INSERT' OR NEW.leased_until IS DISTINCT FROM OLD.leased_until)
              AND (NOT isfinite(NEW.leased_until) OR NEW.leased_until > v_now + interval '1 hour') THEN
            v_longest := (SELECT s.longest_lease FROM public.proxy_lease_settings s);
            IF NOT isfinite(NEW.leased_until) OR NEW.leased_until > v_now + v_longest THEN
                RAISE EXCEPTION 'proxy % cannot be leased until %: %', NEW.id, NEW.leased_until,
                                CASE WHEN NEW.leased_until = '-infinity' THEN 'a lease ends at a time'
                                     ELSE format('further ahead than longest_lease (%s)', v_longest) END
                    USING ERRCODE = 'check_violation', COLUMN = 'leased_until',
                          DETAIL = format('A lease of proxy %s may end at %s at the latest.', NEW.id, v_now + v_longest),
                          HINT = 'Renew the lease while the work goes on (renew_proxy_lease, or the heartbeat of the '
                                 'task), or raise the bound: UPDATE proxy_lease_settings SET longest_lease = ...';
            END IF;
        END IF;
        NEW.leased_at := coalesce(NEW.leased_at, v_now);
    ELSE
        IF NOT v_was_held AND (NEW.is_in_use IS TRUE OR NEW.worker_id IS NOT NULL) THEN
            RAISE EXCEPTION 'proxy % cannot be taken with only one of is_in_use and worker_id', NEW.id
                USING ERRCODE = 'check_violation',
                      HINT = 'Call acquire_proxy($1), or set both in one statement: '
                             'UPDATE proxies SET is_in_use = true, worker_id = $1 WHERE id = $2.';
        END IF;
        -- Anything else is free: on a held proxy, is_in_use = false or worker_id = NULL releases it.
        NEW.is_in_use := false;
        NEW.worker_id := NULL;
        NEW.leased_at := NULL;
        NEW.leased_until := NULL;
        NEW.lease_token := NULL;
        NEW.renewed_at := NULL;
        NEW.released_lease_token := CASE WHEN TG_OP = 'UPDATE' THEN OLD.released_lease_token END;
        IF v_was_held THEN
            NEW.released_at := v_now;
            NEW.released_lease_token := OLD.lease_token;
            IF NEW.strike_count IS NOT DISTINCT FROM OLD.strike_count AND NEW.is_blocked IS NOT TRUE THEN
                NEW.strike_count := 0;
            END IF;
        END IF;
    END IF;

    IF TG_OP = 'UPDATE' AND NEW.strike_count > OLD.strike_count THEN
        v_quarantine := (SELECT s.quarantine_after_strikes FROM public.proxy_lease_settings s);
        IF NEW.strike_count >= v_quarantine AND NOT (v_was_blocked AND OLD.blocked_until IS NULL) THEN
            NEW.blocked_reason := format('quarantined after %s strikes in a row; last: %s', NEW.strike_count,
                                         CASE WHEN NEW.is_blocked IS TRUE AND NOT v_was_blocked
                                              THEN coalesce(NEW.blocked_reason, 'blocked')
                                              ELSE 'reclaimed from a dead worker' END);
            NEW.is_blocked := true;
            NEW.blocked_until := NULL;
        END IF;
    END IF;

    IF NEW.is_blocked IS TRUE THEN
        NEW.blocked_at := CASE WHEN v_was_blocked THEN coalesce(NEW.blocked_at, v_now) ELSE v_now END;
    ELSE
        NEW.blocked_at := NULL;
        NEW.blocked_until := NULL;
        NEW.blocked_reason := NULL;
        NEW.blocked_lease_token := NULL;
        -- An unblock is a later word on the proxy than any ban of the grant that ended before it.
        IF v_was_blocked THEN
            NEW.released_lease_token := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$_$;

COMMENT ON FUNCTION public.tg_proxies__keep_lease_consistent() IS 'Trigger on proxies: a new holder gets a new lease_token, leased_at = now and leased_until = now + lease_duration (unless the statement set leased_until) and renewed_at = now, which every later write setting a new leased_until still ahead stamps again; on a held proxy, is_in_use = false or worker_id = NULL frees it completely, stamps released_at and keeps the ended token in released_lease_token (until the next grant or unblock), and a release of an unblocked proxy that adds no strike clears strike_count; strikes reaching quarantine_after_strikes block the proxy until unblock_proxy; block details (blocked_at, blocked_until, blocked_reason, blocked_lease_token) exist only while blocked; taking a free proxy with only one of is_in_use and worker_id is refused (23514), and so is giving a proxy held under a live lease to another worker (55006), and a lease end further ahead than now + longest_lease, or infinite either way (23514).';

-- FUNCTION tg_proxies__record_lease_events()
CREATE FUNCTION public.tg_proxies__record_lease_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_claimed     text := nullif(current_setting('proxy_leases.event_reason', true), '');
    v_was_held    boolean := TG_OP <> 'INSERT' AND OLD.lease_token IS NOT NULL;
    v_is_held     boolean := TG_OP <> 'DELETE' AND NEW.lease_token IS NOT NULL;
    v_was_blocked boolean := TG_OP <> 'INSERT' AND OLD.is_blocked IS TRUE;
    v_is_blocked  boolean := TG_OP <> 'DELETE' AND NEW.is_blocked IS TRUE;
    v_new_grant   boolean := v_is_held AND (NOT v_was_held OR NEW.lease_token <> OLD.lease_token);
    -- A block begins, or an existing one is replaced: blocked again for another reason or another
    -- end (block_proxy over an operator's block, quarantine of a proxy in a cooldown).
    v_new_block   boolean := v_is_blocked AND (NOT v_was_blocked
                                              OR NEW.blocked_reason IS DISTINCT FROM OLD.blocked_reason
                                              OR NEW.blocked_until IS DISTINCT FROM OLD.blocked_until);
    v_now         timestamptz := clock_timestamp();
    -- When the change happened, as the proxies trigger stamped it before the write (a grant's
    -- leased_at, a release's released_at, a block's blocked_at: one clock reading per row), so that
    -- the events of one change share it.
    v_at          timestamptz := CASE WHEN TG_OP = 'DELETE' THEN v_now
                                      WHEN v_new_grant THEN coalesce(NEW.leased_at, v_now)
                                      WHEN v_was_held AND NOT v_is_held THEN coalesce(NEW.released_at, v_now)
                                      WHEN v_is_blocked AND NOT v_was_blocked THEN coalesce(NEW.blocked_at, v_now)
                                      ELSE v_now END;
    -- Who, as the session sees itself: SET ROLE counts (current_user here is this function's owner).
    v_user        text := coalesce(nullif(current_setting('role'), 'none'), session_user);
BEGIN
    -- In the order a reader expects: the old grant ends and the block lifts before a new grant
    -- begins; a block comes last. A takeover is released, then granted: never two holders at once.
    IF v_was_held AND (NOT v_is_held OR v_new_grant) THEN
        INSERT INTO public.proxy_lease_events
            (occurred_at, proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until,
             detail, db_user)
        VALUES (v_at, OLD.id, 'released',
                CASE WHEN TG_OP = 'DELETE' THEN 'proxy_deleted'
                     WHEN v_is_held THEN 'taken_over'
                     ELSE coalesce(v_claimed, 'direct_update') END,
                OLD.worker_id, OLD.lease_token, OLD.leased_at, coalesce(OLD.renewed_at, OLD.leased_at),
                OLD.leased_until,
                CASE WHEN v_new_block THEN NEW.blocked_reason END, v_user);
    END IF;

    IF v_was_blocked AND NOT v_is_blocked AND TG_OP = 'UPDATE' THEN
        INSERT INTO public.proxy_lease_events (occurred_at, proxy_id, event, reason, detail, db_user)
        VALUES (v_at, NEW.id, 'unblocked', coalesce(v_claimed, 'direct_update'), OLD.blocked_reason, v_user);
    END IF;

    IF v_new_grant THEN
        INSERT INTO public.proxy_lease_events
            (occurred_at, proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until, db_user)
        VALUES (v_at, NEW.id, 'granted', coalesce(v_claimed, 'direct_update'),
                NEW.worker_id, NEW.lease_token, NEW.leased_at, NEW.renewed_at, NEW.leased_until, v_user);
    END IF;

    IF v_new_block THEN
        INSERT INTO public.proxy_lease_events (occurred_at, proxy_id, event, reason, detail, db_user)
        VALUES (v_at, NEW.id, 'blocked',
                -- The proxies trigger quarantines a proxy whose strikes reach the threshold, whatever the
                -- statement meant: an open-ended block, with its own wording in blocked_reason. A
                -- statement that merely wrote such words, below the threshold, is not a quarantine.
                CASE WHEN TG_OP = 'UPDATE' AND NEW.strike_count > OLD.strike_count AND NEW.blocked_until IS NULL
                          AND starts_with(NEW.blocked_reason,
                                          format('quarantined after %s strikes in a row; ', NEW.strike_count))
                          AND NEW.strike_count >= (SELECT s.quarantine_after_strikes FROM public.proxy_lease_settings s)
                     THEN 'quarantined'
                     ELSE coalesce(v_claimed, 'direct_update') END,
                NEW.blocked_reason, v_user);
    END IF;

    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__record_lease_events() IS 'Trigger on proxies: appends to proxy_lease_events a released event when a grant ends, a granted event when a new one begins (a takeover: released, then granted, at the same time), a blocked event when a block begins or is replaced (another reason or end) and an unblocked event when it ends, with the reason the writing code path set in proxy_leases.event_reason (direct_update when none did). Renewals are not logged.';

-- FUNCTION tg_proxies__record_lease_events_on_truncate()
CREATE FUNCTION public.tg_proxies__record_lease_events_on_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'TRUNCATE proxies under % isolation would record the wrong grants as ended',
                        upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Truncate proxies in a READ COMMITTED transaction, so that the audit trail sees the rows '
                         'as they are once the table is locked.';
    END IF;
    INSERT INTO public.proxy_lease_events
        (proxy_id, event, reason, worker_id, lease_token, leased_at, renewed_at, leased_until, db_user)
    SELECT p.id, 'released', 'proxy_deleted', p.worker_id, p.lease_token, p.leased_at,
           coalesce(p.renewed_at, p.leased_at), p.leased_until,
           coalesce(nullif(current_setting('role'), 'none'), session_user)
      FROM public.proxies p
     WHERE p.lease_token IS NOT NULL
     ORDER BY p.id;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxies__record_lease_events_on_truncate() IS 'Trigger on proxies, before TRUNCATE: appends a released event (reason proxy_deleted) to proxy_lease_events for every proxy held at that moment. Refuses (55000) outside READ COMMITTED.';

-- FUNCTION tg_proxy_lease_events__append_only()
CREATE FUNCTION public.tg_proxy_lease_events__append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
BEGIN
    RAISE EXCEPTION 'proxy_lease_events is append-only'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Old events are deleted by prune_lease_events(); change proxy_lease_settings.event_retention '
                     'to keep them longer or shorter.';
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_events__append_only() IS 'Trigger: refuses UPDATE on proxy_lease_events; an audit trail is not rewritten.';

-- FUNCTION tg_proxy_lease_settings__apply_event_recording()
CREATE FUNCTION public.tg_proxy_lease_settings__apply_event_recording() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '5s'
    AS $$
BEGIN
    BEGIN
        IF NEW.record_lease_events THEN
            ALTER TABLE public.proxies
                ENABLE TRIGGER record_lease_events,
                ENABLE TRIGGER record_lease_events_on_insert,
                ENABLE TRIGGER record_lease_events_on_delete;
        ELSE
            ALTER TABLE public.proxies
                DISABLE TRIGGER record_lease_events,
                DISABLE TRIGGER record_lease_events_on_insert,
                DISABLE TRIGGER record_lease_events_on_delete;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'could not switch the recording of proxy_lease_events %: proxies stayed locked for 5 s',
                        CASE WHEN NEW.record_lease_events THEN 'on' ELSE 'off' END
            USING ERRCODE = 'lock_not_available',
                  HINT = 'A long transaction is writing proxies; see pg_stat_activity, then retry. Nothing was changed.';
    END;
    RAISE LOG 'proxy_lease_events: recording of grants, releases, blocks and unblocks turned % by %',
              CASE WHEN NEW.record_lease_events THEN 'on' ELSE 'off' END, session_user;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__apply_event_recording() IS 'Trigger on proxy_lease_settings: enables or disables the audit triggers on proxies when record_lease_events changes. Waits at most 5 s for the lock on proxies, then raises 55P03 and changes nothing. Logs who switched it.';

-- FUNCTION tg_proxy_lease_settings__keep_the_row()
CREATE FUNCTION public.tg_proxy_lease_settings__keep_the_row() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
BEGIN
    RAISE EXCEPTION 'proxy_lease_settings must keep its one row'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Change a setting with UPDATE proxy_lease_settings SET ...';
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__keep_the_row() IS 'Trigger: refuses DELETE and TRUNCATE on proxy_lease_settings, which every lease reads.';

-- FUNCTION tg_proxy_lease_settings__place_heartbeat_triggers()
CREATE FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.place_heartbeat_triggers();
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers() IS 'Trigger on proxy_lease_settings: when lease_duration is set, gives the heartbeat triggers the renewal slot of the new value (place_heartbeat_triggers).';

-- FUNCTION tg_proxy_lease_settings__reject_bad_values()
CREATE FUNCTION public.tg_proxy_lease_settings__reject_bad_values() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    c_longest constant interval := interval '100 years';
    v_column text;
    v_value  interval;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.singleton IS NOT TRUE THEN
        RAISE EXCEPTION 'proxy_lease_settings must keep its one row'
            USING ERRCODE = CASE WHEN TG_OP = 'INSERT' THEN 'unique_violation'
                                 WHEN NEW.singleton IS NULL THEN 'not_null_violation' ELSE 'check_violation' END,
                  HINT = 'Change a setting with UPDATE proxy_lease_settings SET ...';
    END IF;

    FOREACH v_column IN ARRAY ARRAY['lease_duration', 'orphan_grace', 'heartbeat_timeout', 'record_lease_events',
                                       'maintenance_period', 'longest_lease'] LOOP
        IF to_jsonb(NEW) -> v_column = 'null'::jsonb THEN
            RAISE EXCEPTION '% must not be NULL', v_column
                USING ERRCODE = 'not_null_violation', COLUMN = v_column,
                      HINT = format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column);
        END IF;
    END LOOP;

    -- PostgreSQL 17 and later read 'infinity' and '-infinity' as intervals (earlier versions refuse
    -- them on input, 22007): no setting can be that, and the checks below would fail on them with 22008.
    FOR v_column, v_value IN VALUES ('lease_duration', NEW.lease_duration), ('orphan_grace', NEW.orphan_grace),
                                    ('heartbeat_timeout', NEW.heartbeat_timeout), ('event_retention', NEW.event_retention),
                                    ('maintenance_period', NEW.maintenance_period),
                                    ('longest_lease', NEW.longest_lease) LOOP
        IF NOT isfinite(v_value) THEN
            RAISE EXCEPTION '% must be finite, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event for ever.'
                                           ELSE format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column)
                             END;
        END IF;
    END LOOP;

    FOR v_column, v_value IN VALUES ('lease_duration', NEW.lease_duration), ('heartbeat_timeout', NEW.heartbeat_timeout),
                                    ('event_retention', NEW.event_retention), ('maintenance_period', NEW.maintenance_period),
                                    ('longest_lease', NEW.longest_lease) LOOP
        -- A part below zero is not positive either: '1 mon -30 days 1 second' compares as more than
        -- zero (a month counts as 30 days) but, added to a date in February, lands in the past.
        IF v_value <= interval '0'
           OR least(extract(year FROM v_value), extract(month FROM v_value), extract(day FROM v_value),
                    extract(epoch FROM v_value - date_trunc('day', v_value))) < 0 THEN
            RAISE EXCEPTION '% must be positive, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event; ' ELSE '' END
                             || format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column);
        END IF;
        IF v_value > c_longest THEN
            RAISE EXCEPTION '% is too long, got %', v_column, v_value
                USING ERRCODE = 'check_violation', COLUMN = v_column,
                      DETAIL = format('Settings are limited to %s.', c_longest),
                      HINT = CASE v_column WHEN 'event_retention' THEN 'NULL keeps every event for ever.'
                                           ELSE format('UPDATE proxy_lease_settings SET %s = DEFAULT restores the default.', v_column)
                             END;
        END IF;
    END LOOP;

    IF NEW.orphan_grace < interval '0'
       OR least(extract(year FROM NEW.orphan_grace), extract(month FROM NEW.orphan_grace),
                extract(day FROM NEW.orphan_grace),
                extract(epoch FROM NEW.orphan_grace - date_trunc('day', NEW.orphan_grace))) < 0 THEN
        RAISE EXCEPTION 'orphan_grace must not be negative, got %', NEW.orphan_grace
            USING ERRCODE = 'check_violation', COLUMN = 'orphan_grace',
                  HINT = '0 treats a held proxy without a task in processing as orphaned at once.';
    END IF;
    IF NEW.orphan_grace >= NEW.lease_duration THEN
        RAISE EXCEPTION 'orphan_grace must be shorter than lease_duration, got % and %',
                        NEW.orphan_grace, NEW.lease_duration
            USING ERRCODE = 'check_violation', COLUMN = 'orphan_grace',
                  HINT = 'Change both in one UPDATE: SET lease_duration = ..., orphan_grace = ...';
    END IF;
    IF NEW.longest_lease < greatest(NEW.lease_duration, interval '1 hour') THEN
        RAISE EXCEPTION 'longest_lease must be at least an hour and not shorter than lease_duration, got % and %',
                        NEW.longest_lease, NEW.lease_duration
            USING ERRCODE = 'check_violation', COLUMN = 'longest_lease',
                  HINT = 'Change both in one UPDATE: SET lease_duration = ..., longest_lease = ...';
    END IF;
    IF NEW.quarantine_after_strikes <= 0 THEN
        RAISE EXCEPTION 'quarantine_after_strikes must be positive, got %', NEW.quarantine_after_strikes
            USING ERRCODE = 'check_violation', COLUMN = 'quarantine_after_strikes',
                  HINT = 'NULL never quarantines.';
    END IF;
    IF NEW.free_pool_floor < 0 THEN
        RAISE EXCEPTION 'free_pool_floor must not be negative, got %', NEW.free_pool_floor
            USING ERRCODE = 'check_violation', COLUMN = 'free_pool_floor',
                  HINT = 'NULL switches the free-pool check of proxy_leases_health off.';
    END IF;
    IF NOT (NEW.quarantined_share_limit > 0 AND NEW.quarantined_share_limit <= 1) THEN
        RAISE EXCEPTION 'quarantined_share_limit must be above 0 and at most 1, got %', NEW.quarantined_share_limit
            USING ERRCODE = 'check_violation', COLUMN = 'quarantined_share_limit',
                  HINT = 'It is a share of the pool: 0.2 is a fifth. NULL switches the check off.';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__reject_bad_values() IS 'Trigger: refuses a second settings row (23505), a NULL setting (23502), and a setting out of range (23514: a duration <= 0, infinite or over 100 years, orphan_grace negative or not shorter than lease_duration, longest_lease shorter than an hour or than lease_duration, quarantine_after_strikes <= 0, maintenance_period and longest_lease as the durations, free_pool_floor negative, quarantined_share_limit not above 0 and at most 1), naming the setting, with a hint; changes nothing.';

-- FUNCTION tg_tasks__release_proxy_on_task_exit()
CREATE FUNCTION public.tg_tasks__release_proxy_on_task_exit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

COMMENT ON FUNCTION public.tg_tasks__release_proxy_on_task_exit() IS 'Trigger on catalog_tasks and object_tasks: when a row leaves processing (status changes, worker_id changes or is cleared, or the row is deleted), frees the proxies of its old worker, unless that worker still has another task in processing in either table. A task sent back to pending or handed to another worker adds a strike to the proxy. Each release is logged in proxy_lease_events as task_finished, task_deleted, requeued or reassigned. A proxy row another transaction has locked, or, at REPEATABLE READ or SERIALIZABLE, changed since the transaction''s snapshot, is left to the sweeper.';

-- FUNCTION tg_tasks__renew_proxy_lease_on_heartbeat()
CREATE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_lease interval;
    v_until timestamptz;
BEGIN
    IF NEW.heartbeat_at IS NULL OR NEW.heartbeat_at <= OLD.heartbeat_at THEN
        RETURN NULL;
    END IF;
    v_lease := (SELECT s.lease_duration FROM public.proxy_lease_settings s);
    v_until := clock_timestamp() + v_lease;

    IF current_setting('transaction_isolation') = 'read committed' THEN
        UPDATE public.proxies p
           SET leased_until = v_until
         WHERE p.id = ANY (ARRAY(SELECT h.id
                                   FROM public.proxies h
                                  WHERE h.worker_id = NEW.worker_id
                                    AND h.is_in_use
                                    AND h.is_blocked IS NOT TRUE
                                    AND h.leased_until > clock_timestamp()
                                    AND h.leased_until < v_until - v_lease * 0.1
                                    FOR UPDATE SKIP LOCKED));
        RETURN NULL;
    END IF;

    BEGIN
        UPDATE public.proxies p
           SET leased_until = v_until
         WHERE p.id = ANY (ARRAY(SELECT h.id
                                   FROM public.proxies h
                                  WHERE h.worker_id = NEW.worker_id
                                    AND h.is_in_use
                                    AND h.is_blocked IS NOT TRUE
                                    AND h.leased_until > clock_timestamp()
                                    AND h.leased_until < v_until - v_lease * 0.1
                                    FOR UPDATE SKIP LOCKED));
    EXCEPTION WHEN serialization_failure THEN
        -- The proxy row changed after this transaction's snapshot: skipped, as a locked one is.
        NULL;
    END;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() IS 'Trigger on catalog_tasks and object_tasks: when the heartbeat_at of a task in processing moves forward, the lease of its worker''s proxies is extended to now + lease_duration (skipped while more than 90% of the lease is left, for a proxy row another transaction has locked, and, at REPEATABLE READ or SERIALIZABLE, for one changed since the transaction''s snapshot). A lease that has run out, or a proxy blocked while held, is not renewed.';

-- FUNCTION unblock_cooled_down_proxies()
CREATE FUNCTION public.unblock_cooled_down_proxies() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_unblocked integer;
BEGIN
    PERFORM set_config('proxy_leases.event_reason', 'cooldown_over', true);
    UPDATE public.proxies p
       SET is_blocked = false
     WHERE p.id = ANY (ARRAY(SELECT b.id
                               FROM public.proxies b
                              WHERE b.blocked_until <= clock_timestamp() AND b.is_blocked
                              ORDER BY b.id
                                FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_unblocked = ROW_COUNT;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    RETURN v_unblocked;
END
$$;

COMMENT ON FUNCTION public.unblock_cooled_down_proxies() IS 'Unblocks every proxy whose blocked_until has passed and returns how many; their strikes stay. Never waits on a locked row. Run by run_lease_maintenance. Runs as its owner; EXECUTE is granted to proxy_leases_operator.';

-- FUNCTION unblock_proxy(bigint)
CREATE FUNCTION public.unblock_proxy(proxy_id bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    -- Put back after each write: this may run inside another labelled statement (a trigger's).
    v_outer_reason text := current_setting('proxy_leases.event_reason', true);
    v_found boolean;
BEGIN
    IF unblock_proxy.proxy_id IS NULL THEN
        RAISE EXCEPTION 'proxy_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'SELECT id, blocked_reason FROM proxies WHERE is_blocked;';
    END IF;
    PERFORM set_config('proxy_leases.event_reason', 'unblocked_by_operator', true);
    UPDATE public.proxies p
       SET is_blocked = false, strike_count = 0
     WHERE p.id = unblock_proxy.proxy_id AND p.is_blocked;
    v_found := FOUND;
    PERFORM set_config('proxy_leases.event_reason', coalesce(v_outer_reason, ''), true);
    IF v_found THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT FROM public.proxies p WHERE p.id = unblock_proxy.proxy_id) THEN
        RAISE EXCEPTION 'there is no proxy %', coalesce(unblock_proxy.proxy_id::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'SELECT id, blocked_reason FROM proxies WHERE is_blocked;';
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION public.unblock_proxy(proxy_id bigint) IS 'Unblocks the proxy, clears its strikes and returns true; false if it was not blocked. A NULL id raises 22023, an unknown one P0002. The proxy is announced on proxy_available. Runs as its owner; EXECUTE is granted to proxy_leases_operator.';

-- FUNCTION worker_has_processing_task(text)
CREATE FUNCTION public.worker_has_processing_task(worker_id text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
    SELECT EXISTS (SELECT FROM public.catalog_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
        OR EXISTS (SELECT FROM public.object_tasks t
                    WHERE t.worker_id = $1 AND t.status = 'processing')
$_$;

COMMENT ON FUNCTION public.worker_has_processing_task(worker_id text) IS 'True when the worker has a task in processing in catalog_tasks or object_tasks. NULL worker ids in the task tables never match (no NOT IN pitfall). The release trigger and stuck_proxies write the same rule out, for one worker and for all held proxies at once. Runs as its owner, so any role may ask about a worker without rights on the task tables.';


-- ---------------------------------------------------------------------------------------------------------
-- Triggers
-- ---------------------------------------------------------------------------------------------------------

-- TRIGGER announce_proxy_available ON proxies
CREATE TRIGGER announce_proxy_available AFTER UPDATE ON public.proxies FOR EACH ROW WHEN (((new.is_in_use IS FALSE) AND (new.is_blocked IS NOT TRUE) AND ((old.is_in_use IS NOT FALSE) OR (old.is_blocked IS TRUE)))) EXECUTE FUNCTION public.tg_proxies__announce_available();

COMMENT ON TRIGGER announce_proxy_available ON public.proxies IS 'proxy-leases: NOTIFY proxy_available with the proxy id when it is released or unblocked (while fewer than 16 others are free).';

-- TRIGGER announce_proxy_inserted ON proxies
CREATE TRIGGER announce_proxy_inserted AFTER INSERT ON public.proxies REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxies__announce_inserted();

COMMENT ON TRIGGER announce_proxy_inserted ON public.proxies IS 'proxy-leases: one NOTIFY proxy_available per INSERT that adds free proxies to the pool.';

-- TRIGGER append_only ON proxy_lease_events
CREATE TRIGGER append_only BEFORE UPDATE ON public.proxy_lease_events FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxy_lease_events__append_only();

COMMENT ON TRIGGER append_only ON public.proxy_lease_events IS 'proxy-leases: events are appended and, past event_retention, deleted; never updated.';

-- TRIGGER apply_event_recording ON proxy_lease_settings
CREATE TRIGGER apply_event_recording AFTER UPDATE OF record_lease_events ON public.proxy_lease_settings FOR EACH ROW WHEN ((old.record_lease_events IS DISTINCT FROM new.record_lease_events)) EXECUTE FUNCTION public.tg_proxy_lease_settings__apply_event_recording();

COMMENT ON TRIGGER apply_event_recording ON public.proxy_lease_settings IS 'proxy-leases: turns the audit triggers on proxies on or off with record_lease_events.';

-- TRIGGER keep_lease_consistent ON proxies
CREATE TRIGGER keep_lease_consistent BEFORE INSERT OR UPDATE OF is_in_use, worker_id, leased_at, leased_until, lease_token, released_at, strike_count, is_blocked, blocked_at, blocked_until, blocked_reason, renewed_at, released_lease_token, blocked_lease_token ON public.proxies FOR EACH ROW EXECUTE FUNCTION public.tg_proxies__keep_lease_consistent();

COMMENT ON TRIGGER keep_lease_consistent ON public.proxies IS 'proxy-leases: a new holder gets a lease and a fencing token; renewals stamp renewed_at; any release clears them and keeps the ended token in released_lease_token; strikes, quarantine and block details are kept consistent (tg_proxies__keep_lease_consistent).';

-- TRIGGER keep_the_row ON proxy_lease_settings
CREATE TRIGGER keep_the_row BEFORE DELETE OR TRUNCATE ON public.proxy_lease_settings FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxy_lease_settings__keep_the_row();

COMMENT ON TRIGGER keep_the_row ON public.proxy_lease_settings IS 'proxy-leases: the settings row can be updated, never deleted or truncated.';

-- TRIGGER place_heartbeat_triggers ON proxy_lease_settings
CREATE TRIGGER place_heartbeat_triggers AFTER UPDATE OF lease_duration ON public.proxy_lease_settings FOR EACH ROW WHEN ((old.lease_duration IS DISTINCT FROM new.lease_duration)) EXECUTE FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers();

COMMENT ON TRIGGER place_heartbeat_triggers ON public.proxy_lease_settings IS 'proxy-leases: a new lease_duration rewrites the heartbeat triggers on the task tables with a renewal slot of a tenth of it (place_heartbeat_triggers).';

-- TRIGGER record_lease_events ON proxies
CREATE TRIGGER record_lease_events AFTER UPDATE ON public.proxies FOR EACH ROW WHEN (((old.lease_token IS DISTINCT FROM new.lease_token) OR ((old.is_blocked IS TRUE) <> (new.is_blocked IS TRUE)) OR ((new.is_blocked IS TRUE) AND ((old.blocked_reason IS DISTINCT FROM new.blocked_reason) OR (old.blocked_until IS DISTINCT FROM new.blocked_until))))) EXECUTE FUNCTION public.tg_proxies__record_lease_events();

COMMENT ON TRIGGER record_lease_events ON public.proxies IS 'proxy-leases: appends to proxy_lease_events when a grant begins or ends, or a block begins, is replaced or ends (tg_proxies__record_lease_events).';

-- TRIGGER record_lease_events_on_delete ON proxies
CREATE TRIGGER record_lease_events_on_delete AFTER DELETE ON public.proxies FOR EACH ROW WHEN ((old.lease_token IS NOT NULL)) EXECUTE FUNCTION public.tg_proxies__record_lease_events();

COMMENT ON TRIGGER record_lease_events_on_delete ON public.proxies IS 'proxy-leases: a held proxy deleted is recorded as released (proxy_deleted) in proxy_lease_events.';

-- TRIGGER record_lease_events_on_insert ON proxies
CREATE TRIGGER record_lease_events_on_insert AFTER INSERT ON public.proxies FOR EACH ROW WHEN (((new.lease_token IS NOT NULL) OR (new.is_blocked IS TRUE))) EXECUTE FUNCTION public.tg_proxies__record_lease_events();

COMMENT ON TRIGGER record_lease_events_on_insert ON public.proxies IS 'proxy-leases: a proxy inserted held or blocked is recorded in proxy_lease_events.';

-- TRIGGER record_lease_events_on_truncate ON proxies
CREATE TRIGGER record_lease_events_on_truncate BEFORE TRUNCATE ON public.proxies FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxies__record_lease_events_on_truncate();

COMMENT ON TRIGGER record_lease_events_on_truncate ON public.proxies IS 'proxy-leases: TRUNCATE proxies records every held proxy as released (proxy_deleted) in proxy_lease_events.';

-- TRIGGER reject_bad_values ON proxy_lease_settings
CREATE TRIGGER reject_bad_values BEFORE INSERT OR UPDATE ON public.proxy_lease_settings FOR EACH ROW EXECUTE FUNCTION public.tg_proxy_lease_settings__reject_bad_values();

COMMENT ON TRIGGER reject_bad_values ON public.proxy_lease_settings IS 'proxy-leases: names the setting a bad value was given for, and says what to do instead.';

-- TRIGGER release_proxy_on_task_delete ON catalog_tasks
CREATE TRIGGER release_proxy_on_task_delete AFTER DELETE ON public.catalog_tasks FOR EACH ROW WHEN (((old.status = 'processing'::text) AND (old.worker_id IS NOT NULL))) EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

COMMENT ON TRIGGER release_proxy_on_task_delete ON public.catalog_tasks IS 'proxy-leases: frees the old worker''s proxy when a task in processing is deleted.';

-- TRIGGER release_proxy_on_task_delete ON object_tasks
CREATE TRIGGER release_proxy_on_task_delete AFTER DELETE ON public.object_tasks FOR EACH ROW WHEN (((old.status = 'processing'::text) AND (old.worker_id IS NOT NULL))) EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

COMMENT ON TRIGGER release_proxy_on_task_delete ON public.object_tasks IS 'proxy-leases: frees the old worker''s proxy when a task in processing is deleted.';

-- TRIGGER release_proxy_on_task_exit ON catalog_tasks
CREATE TRIGGER release_proxy_on_task_exit AFTER UPDATE OF status, worker_id ON public.catalog_tasks FOR EACH ROW WHEN (((old.status = 'processing'::text) AND (old.worker_id IS NOT NULL) AND ((new.status IS DISTINCT FROM 'processing'::text) OR (new.worker_id IS DISTINCT FROM old.worker_id)))) EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

COMMENT ON TRIGGER release_proxy_on_task_exit ON public.catalog_tasks IS 'proxy-leases: frees the old worker''s proxy when the task leaves processing.';

-- TRIGGER release_proxy_on_task_exit ON object_tasks
CREATE TRIGGER release_proxy_on_task_exit AFTER UPDATE OF status, worker_id ON public.object_tasks FOR EACH ROW WHEN (((old.status = 'processing'::text) AND (old.worker_id IS NOT NULL) AND ((new.status IS DISTINCT FROM 'processing'::text) OR (new.worker_id IS DISTINCT FROM old.worker_id)))) EXECUTE FUNCTION public.tg_tasks__release_proxy_on_task_exit();

COMMENT ON TRIGGER release_proxy_on_task_exit ON public.object_tasks IS 'proxy-leases: frees the old worker''s proxy when the task leaves processing.';

-- TRIGGER renew_proxy_lease_on_heartbeat ON catalog_tasks
CREATE TRIGGER renew_proxy_lease_on_heartbeat AFTER UPDATE OF heartbeat_at ON public.catalog_tasks FOR EACH ROW WHEN (((new.status = 'processing'::text) AND (new.worker_id IS NOT NULL) AND (((old.heartbeat_at IS NULL) AND (new.heartbeat_at IS NOT NULL)) OR (date_bin('00:00:30'::interval, new.heartbeat_at, '2001-01-01 00:00:00+00'::timestamp with time zone) > old.heartbeat_at)))) EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.catalog_tasks IS 'proxy-leases: the first heartbeat of a task in processing in each renewal slot of 00:00:30 (a tenth of lease_duration, on the heartbeat''s own clock) renews the worker''s proxy lease; the others run nothing (place_heartbeat_triggers).';

-- TRIGGER renew_proxy_lease_on_heartbeat ON object_tasks
CREATE TRIGGER renew_proxy_lease_on_heartbeat AFTER UPDATE OF heartbeat_at ON public.object_tasks FOR EACH ROW WHEN (((new.status = 'processing'::text) AND (new.worker_id IS NOT NULL) AND (((old.heartbeat_at IS NULL) AND (new.heartbeat_at IS NOT NULL)) OR (date_bin('00:00:30'::interval, new.heartbeat_at, '2001-01-01 00:00:00+00'::timestamp with time zone) > old.heartbeat_at)))) EXECUTE FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat();

COMMENT ON TRIGGER renew_proxy_lease_on_heartbeat ON public.object_tasks IS 'proxy-leases: the first heartbeat of a task in processing in each renewal slot of 00:00:30 (a tenth of lease_duration, on the heartbeat''s own clock) renews the worker''s proxy lease; the others run nothing (place_heartbeat_triggers).';


-- ---------------------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------------------

-- VIEW proxy_lease_event_totals
CREATE VIEW public.proxy_lease_event_totals AS
 SELECT x.event,
    x.reason,
    (sum(x.events))::bigint AS events
   FROM ( SELECT e.event,
            e.reason,
            count(*) AS events
           FROM public.proxy_lease_events e
          GROUP BY e.event, e.reason
        UNION ALL
         SELECT p.event,
            p.reason,
            p.events
           FROM public.proxy_lease_events_pruned p) x
  GROUP BY x.event, x.reason;

COMMENT ON VIEW public.proxy_lease_event_totals IS 'Events recorded since the audit trail began, by event and reason, pruned ones included: counters (proxy_leases_events_total: docs/monitoring.md, "Prometheus").';
COMMENT ON COLUMN public.proxy_lease_event_totals.event IS 'granted, released, blocked or unblocked.';
COMMENT ON COLUMN public.proxy_lease_event_totals.reason IS 'Why (docs/watching.md, "Event reasons").';
COMMENT ON COLUMN public.proxy_lease_event_totals.events IS 'How many, in all.';

-- VIEW proxy_leases_health
CREATE VIEW public.proxy_leases_health AS
 WITH settings AS (
         SELECT s.maintenance_period,
            s.free_pool_floor,
            s.quarantined_share_limit,
            s.event_retention,
            (((2)::double precision * s.maintenance_period) + '00:00:30'::interval) AS maintenance_late_after
           FROM public.proxy_lease_settings s
        ), alive AS (
         SELECT (EXISTS ( SELECT
                   FROM pg_locks l
                  WHERE ((l.locktype = 'advisory'::text) AND l.granted AND (l.objsubid = 2) AND (l.database = ( SELECT d.oid
                           FROM pg_database d
                          WHERE (d.datname = current_database()))) AND (l.classid = (hashtext('proxy_leases'::text))::oid) AND (l.objid = (hashtext('run_lease_maintenance'::text))::oid)))) AS running
        ), last_run AS (
         SELECT r.id,
            r.started_at,
            ((r.finished_at IS NULL) AND alive.running) AS running
           FROM public.proxy_lease_maintenance_runs r,
            alive
          ORDER BY r.id DESC
         LIMIT 1
        ), last_outcome AS (
         SELECT r.id,
            r.started_at,
            r.finished_at,
            r.failures
           FROM public.proxy_lease_maintenance_runs r,
            settings
          WHERE ((r.finished_at IS NOT NULL) OR ((r.started_at < (now() - settings.maintenance_period)) AND (NOT ((r.id = ( SELECT l.id
                   FROM last_run l)) AND ( SELECT l.running
                   FROM last_run l)))))
          ORDER BY r.id DESC
         LIMIT 1
        ), pool AS (
         SELECT count(*) AS total,
            count(*) FILTER (WHERE ((p.is_in_use IS NOT TRUE) AND (p.is_blocked IS NOT TRUE))) AS free,
            count(*) FILTER (WHERE ((p.is_blocked IS TRUE) AND (p.blocked_until IS NULL) AND starts_with(p.blocked_reason, 'quarantined after '::text))) AS quarantined,
            count(*) FILTER (WHERE ((p.is_in_use IS TRUE) AND (p.leased_until < (now() - ( SELECT s.maintenance_period
                   FROM settings s))))) AS held_past_lease,
            min(p.leased_until) FILTER (WHERE (p.is_in_use IS TRUE)) AS oldest_lease_end
           FROM public.proxies p
        ), oldest_event AS (
         SELECT min(e.occurred_at) AS occurred_at
           FROM public.proxy_lease_events e
        ), checks("position", name, ok, value, threshold, action) AS (
         SELECT 1 AS "?column?",
            'revision'::text AS "?column?",
            (NOT (public.proxy_leases_installed_revision() IS DISTINCT FROM public.proxy_leases_head_revision())) AS "?column?",
            COALESCE(public.proxy_leases_installed_revision(), 'none recorded'::text) AS "coalesce",
            public.proxy_leases_head_revision() AS proxy_leases_head_revision,
            'Run `proxy-leases upgrade` (or alembic upgrade head) with the proxy-leases that installed this view.'::text AS "?column?"
        UNION ALL
         SELECT 2,
            'maintenance_on_time'::text,
            COALESCE((last_run.started_at >= (now() - settings.maintenance_late_after)), false) AS "coalesce",
                CASE
                    WHEN (last_run.started_at IS NULL) THEN 'no run recorded'::text
                    WHEN last_run.running THEN format('run %s still running, started %s ago'::text, last_run.id, date_trunc('second'::text, (now() - last_run.started_at)))
                    ELSE format('last run started %s ago'::text, date_trunc('second'::text, (now() - last_run.started_at)))
                END AS format,
            format('a run within %s'::text, settings.maintenance_late_after) AS format,
            'Nothing is running the maintenance: pg_cron''s job is gone or paused, or its scheduler stopped (the database in cron.database_name dropped, pg_cron out of shared_preload_libraries, a failover to a server without it); or a run is stuck (see pg_stat_activity). `proxy-leases sql --cron` prints the job; or CALL public.run_lease_maintenance() every maintenance_period from another scheduler. A schedule slower than maintenance_period needs that setting raised.'::text
           FROM (settings
             LEFT JOIN last_run ON (true))
        UNION ALL
         SELECT 3,
            'maintenance_succeeded'::text,
            COALESCE(((last_outcome.finished_at IS NOT NULL) AND (cardinality(last_outcome.failures) = 0)), false) AS "coalesce",
                CASE
                    WHEN (last_outcome.id IS NULL) THEN 'no run recorded'::text
                    WHEN (last_outcome.finished_at IS NULL) THEN format('run %s, started %s, never finished'::text, last_outcome.id, date_trunc('second'::text, last_outcome.started_at))
                    WHEN (cardinality(last_outcome.failures) > 0) THEN format('run %s failed: %s'::text, last_outcome.id, array_to_string(last_outcome.failures, '; '::text))
                    ELSE format('run %s succeeded'::text, last_outcome.id)
                END AS format,
            'every step succeeded'::text,
            'Read the failure in proxy_lease_maintenance_runs.failures (and the server log); each step is retried by the next run. A run that never finished was killed, its server crashed, or it could not record its end (a WARNING in the server log).'::text
           FROM (settings
             LEFT JOIN last_outcome ON (true))
        UNION ALL
         SELECT 4,
            'no_proxy_held_past_lease'::text,
            (pool.held_past_lease = 0),
                CASE
                    WHEN (pool.held_past_lease = 0) THEN '0'::text
                    ELSE format('%s, the oldest lease ended %s ago'::text, pool.held_past_lease, date_trunc('second'::text, (now() - pool.oldest_lease_end)))
                END AS format,
            format('0 held more than %s past the lease'::text, settings.maintenance_period) AS format,
            'The sweep is not freeing expired leases: see the maintenance checks, and SELECT * FROM stuck_proxies.'::text
           FROM pool,
            settings
        UNION ALL
         SELECT 5,
            'free_pool_above_floor'::text,
            ((settings.free_pool_floor IS NULL) OR (pool.free >= settings.free_pool_floor)),
            format('%s free of %s'::text, pool.free, pool.total) AS format,
                CASE
                    WHEN (settings.free_pool_floor IS NULL) THEN 'off (free_pool_floor is NULL)'::text
                    ELSE format('at least %s free'::text, settings.free_pool_floor)
                END AS format,
            'Workers are about to wait for proxies: SELECT * FROM proxy_pool_status and proxy_pool_by_container show where they are (held, blocked, stuck); add proxies, or unblock those blocked by mistake.'::text
           FROM pool,
            settings
        UNION ALL
         SELECT 6,
            'quarantine_below_share'::text,
            ((settings.quarantined_share_limit IS NULL) OR ((pool.quarantined)::numeric < (settings.quarantined_share_limit * (pool.total)::numeric)) OR (pool.total = 0)),
            format('%s quarantined of %s'::text, pool.quarantined, pool.total) AS format,
                CASE
                    WHEN (settings.quarantined_share_limit IS NULL) THEN 'off (quarantined_share_limit is NULL)'::text
                    ELSE format('below %s of the pool'::text, settings.quarantined_share_limit)
                END AS format,
            'Many proxies failed their workers several times in a row: check the proxies (or the sites they reach); unblock_proxy(id) returns one to the pool.'::text
           FROM pool,
            settings
        UNION ALL
         SELECT 7,
            'audit_pruned'::text,
            ((settings.event_retention IS NULL) OR (oldest_event.occurred_at IS NULL) OR (oldest_event.occurred_at >= ((now() - settings.event_retention) - '1 day'::interval))),
                CASE
                    WHEN (oldest_event.occurred_at IS NULL) THEN 'no events'::text
                    ELSE format('oldest event %s'::text, date_trunc('second'::text, oldest_event.occurred_at))
                END AS format,
                CASE
                    WHEN (settings.event_retention IS NULL) THEN 'off (event_retention is NULL: kept for ever)'::text
                    ELSE format('none older than event_retention (%s) and a day'::text, settings.event_retention)
                END AS format,
            'prune_lease_events() is not keeping up: see the maintenance checks; a long backlog can be pruned by calling SELECT prune_lease_events() until it returns 0.'::text
           FROM settings,
            oldest_event
        )
 SELECT c.name,
    c.ok,
    c.value,
    c.threshold,
    c.action
   FROM checks c
  ORDER BY c."position";

COMMENT ON VIEW public.proxy_leases_health IS 'proxy-leases checking itself, one row per check: revision (the database is at this package''s head), maintenance_on_time, maintenance_succeeded, no_proxy_held_past_lease, free_pool_above_floor, quarantine_below_share, audit_pruned. ok false: do what action says. docs/monitoring.md.';
COMMENT ON COLUMN public.proxy_leases_health.name IS 'The check.';
COMMENT ON COLUMN public.proxy_leases_health.ok IS 'Whether the check passes; never NULL.';
COMMENT ON COLUMN public.proxy_leases_health.value IS 'What the check saw, in words.';
COMMENT ON COLUMN public.proxy_leases_health.threshold IS 'What it was measured against (the setting that sets it).';
COMMENT ON COLUMN public.proxy_leases_health.action IS 'What to do when ok is false.';

-- VIEW stuck_proxies
CREATE VIEW public.stuck_proxies AS
 SELECT p.id,
    p.worker_id,
    p.leased_at,
    p.leased_until,
        CASE
            WHEN ((p.is_in_use IS NOT TRUE) OR (p.worker_id IS NULL) OR (p.leased_at IS NULL) OR (p.leased_until IS NULL)) THEN 'inconsistent'::text
            WHEN (p.leased_until <= now()) THEN 'lease_expired'::text
            ELSE 'orphaned'::text
        END AS reason
   FROM public.proxies p
  WHERE ((p.is_in_use OR (p.worker_id IS NOT NULL)) AND ((p.is_in_use IS NOT TRUE) OR (p.worker_id IS NULL) OR (p.leased_at IS NULL) OR (p.leased_until IS NULL) OR (p.leased_until <= now()) OR ((p.leased_at <= (now() - ( SELECT s.orphan_grace
           FROM public.proxy_lease_settings s))) AND (NOT (EXISTS ( SELECT
           FROM public.catalog_tasks t
          WHERE ((t.worker_id = p.worker_id) AND (t.status = 'processing'::text))))) AND (NOT (EXISTS ( SELECT
           FROM public.object_tasks t
          WHERE ((t.worker_id = p.worker_id) AND (t.status = 'processing'::text))))))));

COMMENT ON VIEW public.stuck_proxies IS 'Proxies the next sweep frees, with the reason: lease_expired (no renewal for a whole lease), orphaned (past orphan_grace and the worker has no task in processing), inconsistent (a row that breaks the lease rule). Times are the current transaction''s now(). The orphan rule is worker_has_processing_task() written out for all held proxies at once, so that a sweep calls no function per proxy; a test keeps the two in agreement.';

-- VIEW proxy_pool_by_container
CREATE VIEW public.proxy_pool_by_container AS
 SELECT split_part(x.worker_id, '_'::text, 1) AS container_id,
    count(DISTINCT x.worker_id) AS workers,
    count(*) FILTER (WHERE (x.proxy_id IS NOT NULL)) AS proxies_held,
    count(*) FILTER (WHERE (x.proxy_id IS NULL)) AS tasks_processing,
    count(*) FILTER (WHERE (x.proxy_id IN ( SELECT s.id
           FROM public.stuck_proxies s))) AS proxies_stuck,
    min(x.leased_at) AS oldest_lease,
    max(x.renewed_at) AS latest_renewal
   FROM ( SELECT p.id AS proxy_id,
            p.worker_id,
            p.leased_at,
            p.renewed_at
           FROM public.proxies p
          WHERE (p.is_in_use OR (p.worker_id IS NOT NULL))
        UNION ALL
         SELECT NULL::bigint,
            t.worker_id,
            NULL::timestamp with time zone,
            NULL::timestamp with time zone
           FROM public.catalog_tasks t
          WHERE ((t.status = 'processing'::text) AND (t.worker_id IS NOT NULL))
        UNION ALL
         SELECT NULL::bigint,
            t.worker_id,
            NULL::timestamp with time zone,
            NULL::timestamp with time zone
           FROM public.object_tasks t
          WHERE ((t.status = 'processing'::text) AND (t.worker_id IS NOT NULL))) x
  GROUP BY (split_part(x.worker_id, '_'::text, 1));

COMMENT ON VIEW public.proxy_pool_by_container IS 'One row per container that holds a proxy or has a task in processing (container_id: a worker id up to its first "_"; NULL for half-held rows with no worker). workers: distinct worker ids seen; proxies_held; tasks_processing (both task tables); proxies_stuck: held proxies the next sweep frees; oldest_lease: the earliest leased_at; latest_renewal: the last sign of life of any of its grants.';

-- VIEW proxy_pool_status
CREATE VIEW public.proxy_pool_status AS
 SELECT count(*) AS total,
    count(*) FILTER (WHERE (p.is_in_use IS TRUE)) AS in_use,
    count(*) FILTER (WHERE ((p.is_in_use IS NOT TRUE) AND (p.is_blocked IS TRUE))) AS blocked,
    count(*) FILTER (WHERE ((p.is_in_use IS NOT TRUE) AND (p.is_blocked IS NOT TRUE))) AS free,
    ( SELECT count(*) AS count
           FROM public.stuck_proxies) AS stuck
   FROM public.proxies p;

COMMENT ON VIEW public.proxy_pool_status IS 'The proxy pool in one row: total = in_use + blocked + free. in_use: held by a worker (blocked or not); blocked: not held and blocked (cooldown or quarantine); free: neither, what acquire_proxy hands out; stuck: of in_use, how many the next sweep frees (the rows of stuck_proxies).';
COMMENT ON COLUMN public.proxy_pool_status.total IS 'Every proxy.';
COMMENT ON COLUMN public.proxy_pool_status.in_use IS 'Held by a worker (is_in_use), blocked or not.';
COMMENT ON COLUMN public.proxy_pool_status.blocked IS 'Not held and blocked: cooling down or quarantined.';
COMMENT ON COLUMN public.proxy_pool_status.free IS 'Neither held nor blocked: what acquire_proxy can hand out.';
COMMENT ON COLUMN public.proxy_pool_status.stuck IS 'Held but eligible for release right now, by the sweeper''s own rules (count of stuck_proxies).';

-- VIEW proxy_recoveries
CREATE VIEW public.proxy_recoveries AS
 SELECT e.occurred_at AS freed_at,
    e.proxy_id,
    e.worker_id,
    e.reason,
    e.lease_token,
    e.renewed_at AS last_sign_of_life,
    e.leased_until,
    (e.occurred_at - e.renewed_at) AS held_after_last_sign_of_life,
    (e.occurred_at - e.leased_until) AS freed_after_lease_end
   FROM public.proxy_lease_events e
  WHERE ((e.event = 'released'::text) AND (e.reason = ANY (ARRAY['lease_expired'::text, 'orphaned'::text, 'inconsistent'::text, 'container_restart'::text, 'requeued'::text, 'reassigned'::text, 'taken_over'::text])));

COMMENT ON VIEW public.proxy_recoveries IS 'Proxies reclaimed from dead workers (released events with reason lease_expired, orphaned, inconsistent, container_restart, requeued, reassigned or taken_over): held_after_last_sign_of_life = freed_at - the grant''s last renewal (an upper bound: heartbeats renew only once a tenth of the lease has passed); freed_after_lease_end, negative when freed before the lease ran out.';

-- VIEW proxy_recovery_by_hour
CREATE VIEW public.proxy_recovery_by_hour AS
 SELECT date_trunc('hour'::text, r.freed_at) AS hour,
    count(*) AS reclaimed,
    round((percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM r.held_after_last_sign_of_life))::double precision)))::numeric, 1) AS p50_seconds,
    round((percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM r.held_after_last_sign_of_life))::double precision)))::numeric, 1) AS p95_seconds,
    round(max(EXTRACT(epoch FROM r.held_after_last_sign_of_life)), 1) AS max_seconds,
    round(sum(EXTRACT(epoch FROM r.held_after_last_sign_of_life))) AS lost_proxy_seconds,
    count(*) FILTER (WHERE (r.freed_after_lease_end > '00:00:00'::interval)) AS freed_after_lease_end
   FROM public.proxy_recoveries r
  GROUP BY (date_trunc('hour'::text, r.freed_at));

COMMENT ON VIEW public.proxy_recovery_by_hour IS 'Per hour: proxies reclaimed from dead workers, and how long each stayed held after its worker''s last sign of life: p50, p95 and max in seconds, and their sum, lost_proxy_seconds (time the pool went without them). freed_after_lease_end counts those freed only after their lease ran out (the sweep lag); compare max_seconds with lease_duration + the job''s period.';


-- ---------------------------------------------------------------------------------------------------------
-- Rights
-- ---------------------------------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION public.acquire_proxy(worker_id text, lease interval) FROM PUBLIC;
GRANT ALL ON FUNCTION public.acquire_proxy(worker_id text, lease interval) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.acquire_proxy(worker_id text, lease interval) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.block_proxy(proxy_id bigint, reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, reason text) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, reason text) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text, cooldown interval) FROM PUBLIC;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text, cooldown interval) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.block_proxy(proxy_id bigint, lease_token bigint, reason text, cooldown interval) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.place_heartbeat_triggers() FROM PUBLIC;

GRANT SELECT ON TABLE public.proxies TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.proxy_leases_installed_revision() FROM PUBLIC;
GRANT ALL ON FUNCTION public.proxy_leases_installed_revision() TO pg_monitor;
GRANT ALL ON FUNCTION public.proxy_leases_installed_revision() TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.prune_lease_events(batch_size integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.prune_lease_events(batch_size integer) TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.raise_if_lease_arguments_swapped(called text, proxy_id bigint, lease_token bigint, undone text, rest_of_call text) FROM PUBLIC;

REVOKE ALL ON FUNCTION public.release_container_proxies(container_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_container_proxies(container_id text) TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.release_proxy(proxy_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_proxy(proxy_id bigint) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.release_proxy(proxy_id bigint) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.release_proxy(proxy_id bigint, lease_token bigint) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.release_stuck_proxies() FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_stuck_proxies() TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval) FROM PUBLIC;
GRANT ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval) TO proxy_leases_operator;
GRANT ALL ON FUNCTION public.renew_proxy_lease(proxy_id bigint, lease_token bigint, lease interval) TO proxy_leases_worker;

REVOKE ALL ON FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval) FROM PUBLIC;
GRANT ALL ON FUNCTION public.requeue_stale_tasks(heartbeat_timeout interval) TO proxy_leases_operator;

GRANT ALL ON PROCEDURE public.run_lease_maintenance(INOUT requeued_tasks integer, INOUT released_proxies integer, INOUT unblocked_proxies integer) TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.tg_proxies__announce_available() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxies__announce_inserted() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxies__keep_lease_consistent() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxies__record_lease_events() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxies__record_lease_events_on_truncate() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxy_lease_events__append_only() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxy_lease_settings__apply_event_recording() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxy_lease_settings__place_heartbeat_triggers() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_proxy_lease_settings__reject_bad_values() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_tasks__release_proxy_on_task_exit() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.tg_tasks__renew_proxy_lease_on_heartbeat() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.unblock_cooled_down_proxies() FROM PUBLIC;
GRANT ALL ON FUNCTION public.unblock_cooled_down_proxies() TO proxy_leases_operator;

REVOKE ALL ON FUNCTION public.unblock_proxy(proxy_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.unblock_proxy(proxy_id bigint) TO proxy_leases_operator;

GRANT SELECT ON TABLE public.catalog_tasks TO proxy_leases_operator;
GRANT SELECT ON TABLE public.catalog_tasks TO proxy_leases_worker;

GRANT UPDATE(status) ON TABLE public.catalog_tasks TO proxy_leases_operator;
GRANT UPDATE(status) ON TABLE public.catalog_tasks TO proxy_leases_worker;

GRANT UPDATE(worker_id) ON TABLE public.catalog_tasks TO proxy_leases_operator;
GRANT UPDATE(worker_id) ON TABLE public.catalog_tasks TO proxy_leases_worker;

GRANT UPDATE(heartbeat_at) ON TABLE public.catalog_tasks TO proxy_leases_operator;
GRANT UPDATE(heartbeat_at) ON TABLE public.catalog_tasks TO proxy_leases_worker;

GRANT SELECT ON TABLE public.object_tasks TO proxy_leases_operator;
GRANT SELECT ON TABLE public.object_tasks TO proxy_leases_worker;

GRANT UPDATE(status) ON TABLE public.object_tasks TO proxy_leases_operator;
GRANT UPDATE(status) ON TABLE public.object_tasks TO proxy_leases_worker;

GRANT UPDATE(worker_id) ON TABLE public.object_tasks TO proxy_leases_operator;
GRANT UPDATE(worker_id) ON TABLE public.object_tasks TO proxy_leases_worker;

GRANT UPDATE(heartbeat_at) ON TABLE public.object_tasks TO proxy_leases_operator;
GRANT UPDATE(heartbeat_at) ON TABLE public.object_tasks TO proxy_leases_worker;

GRANT SELECT ON TABLE public.proxy_lease_events TO proxy_leases_operator;

GRANT SELECT ON TABLE public.proxy_lease_events_pruned TO proxy_leases_operator;

GRANT SELECT ON TABLE public.proxy_lease_event_totals TO pg_monitor;
GRANT SELECT ON TABLE public.proxy_lease_event_totals TO proxy_leases_operator;

GRANT SELECT ON TABLE public.proxy_lease_maintenance_runs TO pg_monitor;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.proxy_lease_maintenance_runs TO proxy_leases_operator;

GRANT SELECT ON TABLE public.proxy_lease_settings TO PUBLIC;

GRANT SELECT ON TABLE public.proxy_leases_health TO pg_monitor;
GRANT SELECT ON TABLE public.proxy_leases_health TO proxy_leases_operator;

GRANT SELECT ON TABLE public.stuck_proxies TO pg_monitor;
GRANT SELECT ON TABLE public.stuck_proxies TO proxy_leases_operator;
GRANT SELECT ON TABLE public.stuck_proxies TO proxy_leases_worker;

GRANT SELECT ON TABLE public.proxy_pool_by_container TO pg_monitor;
GRANT SELECT ON TABLE public.proxy_pool_by_container TO proxy_leases_operator;
GRANT SELECT ON TABLE public.proxy_pool_by_container TO proxy_leases_worker;

GRANT SELECT ON TABLE public.proxy_pool_status TO pg_monitor;
GRANT SELECT ON TABLE public.proxy_pool_status TO proxy_leases_operator;
GRANT SELECT ON TABLE public.proxy_pool_status TO proxy_leases_worker;

GRANT SELECT ON TABLE public.proxy_recoveries TO proxy_leases_operator;

GRANT SELECT ON TABLE public.proxy_recovery_by_hour TO pg_monitor;
GRANT SELECT ON TABLE public.proxy_recovery_by_hour TO proxy_leases_operator;
