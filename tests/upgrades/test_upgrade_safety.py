"""Every revision step on a live database: behind a held lock it fails fast with instructions, and a
failure in its middle leaves the previous revision exactly as it was.

The steps come from Alembic's own revision list, so a new revision is covered (or the test says
which blocker it needs) as soon as it exists.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psycopg
import pytest

from proxy_leases.migrations import fresh_install, sql_files
from tests.helpers import catalog, wait_for_lock_wait
from tools.harness import CRON_DATABASE, DEMO_DIR, Database, alembic, alembic_cli, revisions

REVISIONS = list(revisions())
BEFORE = {rev: (REVISIONS[i - 1] if i else "base") for i, rev in enumerate(REVISIONS)}
# (direction, revision): upgrade goes BEFORE[rev] -> rev, downgrade goes rev -> BEFORE[rev].
STEPS = [(direction, rev) for rev in REVISIONS for direction in ("upgrade", "downgrade")]
STEP_IDS = [f"{direction}-{rev}" for direction, rev in STEPS]

# What each revision's upgrade() does, recorded without a database (the fresh-install plan's recorder):
# the revisions that schedule pg_cron jobs, and those that build indexes CONCURRENTLY, outside a transaction.
RECORDED_STEPS = fresh_install.recorded_steps()[1]
CRON_REVISIONS = {step.revision for step in RECORDED_STEPS if step.kind == "cron"}
CONCURRENT_REVISIONS = {step.revision for step in RECORDED_STEPS if step.kind == "outside"
                        and any("CONCURRENTLY" in sql_files.read_sql(name) for name in step.files)}
LOCK_TIMEOUT = "1s"
BOUND = 15.0  # seconds a blocked step may take, all of it: connecting, waiting lock_timeout, rolling back


def start_and_target(direction: str, rev: str) -> tuple[str, str]:
    return (BEFORE[rev], rev) if direction == "upgrade" else (rev, BEFORE[rev])


def run_step(database: Database, direction: str, rev: str, **x: str) -> None:
    alembic(database.url, direction, start_and_target(direction, rev)[1], **x)


def prepare(database: Database, start: str, cron: str = "off") -> None:
    """The database at `start`, holding what a live fleet holds: a free proxy, a held one and its
    worker's tasks in processing, written at 0001 so that the backfills (0004, 0007) have work."""
    if start == "base":
        return
    database.upgrade("0001_fleet_schema", cron=cron)
    if start != "0001_fleet_schema":
        database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
        database.run("INSERT INTO proxies (address, is_in_use, worker_id) VALUES ('http://10.0.0.2:3128', true, 'c1_1')")
        for table in ("catalog_tasks", "object_tasks"):
            database.run(f"INSERT INTO {table} (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_1', now())")
    database.upgrade(start, cron=cron)


def version(database: Database) -> str:
    if database.one("SELECT to_regclass('proxy_leases_alembic_version') IS NULL"):
        return "base"
    return database.one("SELECT coalesce((SELECT version_num FROM proxy_leases_alembic_version), 'base')")


EXTRA_CATALOG = """
SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '-')
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'acl ' || p.oid::regprocedure || ': ' || coalesce(p.proacl::text, '-') || ' definer=' || p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger state ' || tgrelid::regclass || '.' || tgname || ': ' || tgenabled::text
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'description ' || classoid::regclass || ' '
       || CASE WHEN classoid = 'pg_class'::regclass THEN objoid::regclass::text ELSE objoid::text END
       || '/' || objsubid || ': ' || md5(description)
  FROM pg_description WHERE objoid >= 16384
UNION ALL
SELECT 'sequence ' || seqrelid::regclass || ' ' || seqstart || ' ' || seqincrement FROM pg_sequence
UNION ALL
SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
ORDER BY 1
"""


def snapshot(database: Database) -> dict[str, object]:
    """What a failed step must leave exactly as it found it."""
    state = {"version": version(database), "catalog": catalog(database),
             "extra": [row[0] for row in database.all(EXTRA_CATALOG)]}
    for table in ("proxies", "proxy_lease_settings", "catalog_tasks", "object_tasks", "proxy_leases_adopted_tables"):
        if database.one("SELECT to_regclass(%s) IS NOT NULL", (table,)):
            state[table] = database.all(f"SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text")
    return state


def cron_jobs(pg_server, database: Database) -> list[tuple]:
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        return conn.execute("SELECT jobid, jobname, schedule, command, database, active FROM cron.job "
                            "WHERE jobname LIKE %s ORDER BY jobname", ("%." + database.name,)).fetchall()


def drop_cron_jobs(pg_server, database: Database) -> None:
    """fresh_database removes the jobs that run in the database; the history job runs in pg_cron's."""
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE %s", ("%." + database.name,))


def in_thread(fn: Callable[[], None], bound: float) -> tuple[list, float, threading.Thread]:
    """Run fn; (its outcome: ["ok"] or [the exception], seconds it took, the thread if still running)."""
    outcome: list = []

    def go():
        try:
            fn()
            outcome.append("ok")
        except BaseException as error:  # SystemExit included: that is how env.py reports a lock timeout
            outcome.append(error)

    began = time.monotonic()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(bound)
    return outcome, time.monotonic() - began, thread


# ----------------------------------------------------------------------------------------------
# 1. Behind a held lock: every step fails within a bound, with instructions, having changed nothing.
# ----------------------------------------------------------------------------------------------

@dataclass
class Blocker:
    """An open transaction holding what a live fleet (or an operator) holds, that conflicts with a step."""
    key: str
    what: str
    sql: str
    in_cron_database: bool = False


WORKER_WRITING_PROXIES = Blocker("proxies_writer", "a worker's open transaction that updated a proxy (ROW EXCLUSIVE on proxies)",
                                 "UPDATE proxies SET is_blocked = is_blocked WHERE NOT is_in_use")
WORKER_HEARTBEAT = Blocker("heartbeat", "a worker's open transaction that sent a heartbeat (ROW EXCLUSIVE on catalog_tasks)",
                           "UPDATE catalog_tasks SET heartbeat_at = now()")
SETTINGS_READER = Blocker("settings_reader", "a dashboard's open transaction that read the settings (ACCESS SHARE on proxy_lease_settings)",
                          "SELECT * FROM proxy_lease_settings")
PROXIES_READER = Blocker("proxies_reader", "an open transaction that read proxies (ACCESS SHARE)", "SELECT count(*) FROM proxies")
HELD_ROW_LOCKED = Blocker("held_row_locked", "a legacy worker's open transaction that locked its held proxy (FOR UPDATE)",
                          "SELECT id FROM proxies WHERE is_in_use FOR UPDATE")


def cron_same_name(job: str) -> Blocker:
    return Blocker("cron_same_name", f"an uncommitted cron.schedule of the same job {job}.<db> (an operator following --sql, "
                   "or a second upgrade of the same database)",
                   f"SELECT cron.schedule_in_database('{job}.' || %(db)s, '* * * * *', 'SELECT 1', %(db)s)", True)


def cron_paused(job: str) -> Blocker:
    return Blocker("cron_paused", f"an uncommitted cron.alter_job pausing {job}.<db> (docs/operations.md, 'The pg_cron job')",
                   f"SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = '{job}.' || %(db)s",
                   True)


# What conflicts with each step. A step that no lock held by the fleet can block is named in
# UNBLOCKABLE or CONCURRENT with the reason, and tested for the opposite: it goes through, or waits
# without holding anyone up.
BLOCKERS: dict[tuple[str, str], list[Blocker]] = {
    ("downgrade", "0001_fleet_schema"): [PROXIES_READER],
    ("upgrade", "0003_lease"): [WORKER_WRITING_PROXIES, WORKER_HEARTBEAT],
    ("downgrade", "0003_lease"): [WORKER_WRITING_PROXIES, WORKER_HEARTBEAT],
    ("upgrade", "0004_lease_backfill"): [HELD_ROW_LOCKED],
    ("downgrade", "0004_lease_backfill"): [PROXIES_READER],
    ("upgrade", "0005_sweep_schedule"): [cron_same_name("proxy_leases_sweep")],
    ("downgrade", "0005_sweep_schedule"): [cron_paused("proxy_leases_sweep")],
    ("upgrade", "0006_lease_api"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0006_lease_api"): [WORKER_HEARTBEAT, SETTINGS_READER],
    ("upgrade", "0007_lease_api_backfill"): [HELD_ROW_LOCKED],
    ("downgrade", "0007_lease_api_backfill"): [WORKER_WRITING_PROXIES],
    ("upgrade", "0009_maintenance_schedule"): [cron_paused("proxy_leases_sweep")],
    ("downgrade", "0009_maintenance_schedule"): [cron_paused("proxy_leases_sweep")],
    ("upgrade", "0010_lease_events"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0010_lease_events"): [WORKER_HEARTBEAT],
    ("upgrade", "0011_cron_history_retention"): [cron_same_name("proxy_leases_prune_history")],
    ("downgrade", "0011_cron_history_retention"): [cron_paused("proxy_leases_prune_history")],
    ("upgrade", "0012_stuck_rule_set_based"): [WORKER_WRITING_PROXIES],
    ("downgrade", "0012_stuck_rule_set_based"): [SETTINGS_READER],
    ("upgrade", "0013_event_recording"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0013_event_recording"): [WORKER_HEARTBEAT],
    ("upgrade", "0014_least_privilege"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0014_least_privilege"): [WORKER_HEARTBEAT],
    ("upgrade", "0015_input_checks"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0015_input_checks"): [PROXIES_READER],
    ("upgrade", "0016_decide_after_lock"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0016_decide_after_lock"): [WORKER_HEARTBEAT],
    ("upgrade", "0017_finite_intervals"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0017_finite_intervals"): [WORKER_HEARTBEAT],
    ("upgrade", "0018_wrong_call_help"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0018_wrong_call_help"): [WORKER_HEARTBEAT],
    ("upgrade", "0019_heartbeat_slots"): [WORKER_HEARTBEAT, SETTINGS_READER],
    ("downgrade", "0019_heartbeat_slots"): [WORKER_HEARTBEAT],
    ("upgrade", "0020_task_exit_inline_rule"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0020_task_exit_inline_rule"): [WORKER_HEARTBEAT],
    ("upgrade", "0021_maintenance_health"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0021_maintenance_health"): [WORKER_HEARTBEAT],
    ("upgrade", "0022_self_healing"): [WORKER_WRITING_PROXIES, SETTINGS_READER],
    ("downgrade", "0022_self_healing"): [WORKER_HEARTBEAT],
}
UNBLOCKABLE = {
    ("upgrade", "0001_fleet_schema"): "adopts the fleet's tables by reading information_schema, which takes no "
                                      "lock on them, and creates only tables of its own",
}
CONCURRENT = {(direction, rev): "CREATE/DROP INDEX CONCURRENTLY: exempt from lock_timeout by design (docs/install.md, "
                                "'The revisions'); it waits for older transactions but blocks nobody meanwhile"
              for direction, rev in STEPS if rev in CONCURRENT_REVISIONS}


def test_every_step_is_accounted_for():
    assert set(BLOCKERS) | set(UNBLOCKABLE) | set(CONCURRENT) == set(STEPS)
    assert not (set(BLOCKERS) & (set(UNBLOCKABLE) | set(CONCURRENT)))


def hold(pg_server, database: Database, blocker: Blocker) -> psycopg.Connection:
    url = pg_server.url(CRON_DATABASE) if blocker.in_cron_database else database.url
    conn = psycopg.connect(url)
    cursor = conn.execute(blocker.sql, {"db": database.name} if blocker.in_cron_database else None)
    assert cursor.rowcount > 0, f"{blocker.what}: holds nothing"
    return conn


BLOCKED_CASES = [(direction, rev, i) for (direction, rev), blockers in BLOCKERS.items() for i in range(len(blockers))]


@pytest.mark.parametrize("direction, rev, which", BLOCKED_CASES,
                         ids=[f"{d}-{r}-{BLOCKERS[d, r][i].key}" for d, r, i in BLOCKED_CASES])
def test_a_step_behind_a_held_lock_fails_fast_with_instructions_and_changes_nothing(
        fresh_database, pg_server, direction, rev, which):
    blocker = BLOCKERS[direction, rev][which]
    cron = "auto" if rev in CRON_REVISIONS else "off"
    database = fresh_database()
    start, target = start_and_target(direction, rev)
    prepare(database, start, cron=cron)
    before, jobs = snapshot(database), cron_jobs(pg_server, database)

    holder = hold(pg_server, database, blocker)
    try:
        outcome, took, thread = in_thread(lambda: run_step(database, direction, rev, cron=cron,
                                                           lock_timeout=LOCK_TIMEOUT), BOUND)
    finally:
        holder.rollback()
        holder.close()
    thread.join(30)
    try:
        assert took < BOUND, f"{direction} {rev} still waiting after {BOUND}s behind {blocker.what}"
        assert len(outcome) == 1 and isinstance(outcome[0], SystemExit), f"{direction} {rev} went on: {outcome}"
        message = str(outcome[0])
        assert f"lock_timeout={LOCK_TIMEOUT}" in message and "changed nothing" in message
        assert "pg_stat_activity" in message and "-x lock_timeout=" in message
        if blocker.in_cron_database:
            assert f"in database {CRON_DATABASE}, where pg_cron lives" in message
        assert snapshot(database) == before
        assert cron_jobs(pg_server, database) == jobs
        print(f"\n{direction} {rev} behind {blocker.what}: stopped after {took:.2f}s")

        run_step(database, direction, rev, cron=cron)  # and once the transaction is gone, it goes through
        assert version(database) == target
    finally:
        drop_cron_jobs(pg_server, database)


def test_the_baseline_adopts_tables_that_a_long_transaction_has_locked(fresh_database):
    """UNBLOCKABLE: even ACCESS EXCLUSIVE on all three fleet tables does not hold up 0001_fleet_schema."""
    database = fresh_database()
    database.run((DEMO_DIR / "legacy_schema.sql").read_text())
    with database.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE proxies, catalog_tasks, object_tasks IN ACCESS EXCLUSIVE MODE")
        outcome, took, _ = in_thread(lambda: database.upgrade("0001_fleet_schema", lock_timeout=LOCK_TIMEOUT), BOUND)
        holder.rollback()
    assert outcome == ["ok"] and took < BOUND
    assert database.all("SELECT table_name, created FROM proxy_leases_adopted_tables ORDER BY 1") == [
        ("catalog_tasks", False), ("object_tasks", False), ("proxies", False)]


@pytest.mark.parametrize("direction, rev", sorted(CONCURRENT), ids=[f"{d}-{r}" for d, r in sorted(CONCURRENT)])
def test_a_concurrent_index_step_outwaits_a_writer_without_holding_up_the_fleet(fresh_database, direction, rev):
    """CONCURRENT: past lock_timeout the step still waits, and writes to the same tables go through."""
    database = fresh_database()
    start, target = start_and_target(direction, rev)
    prepare(database, start)
    with database.connect(autocommit=False) as holder:
        holder.execute(WORKER_WRITING_PROXIES.sql)
        holder.execute(WORKER_HEARTBEAT.sql)
        holder.execute("UPDATE object_tasks SET heartbeat_at = now()")
        outcome, _, thread = in_thread(lambda: run_step(database, direction, rev, lock_timeout=LOCK_TIMEOUT), 0)
        wait_for_lock_wait(database, "%CONCURRENTLY%")
        time.sleep(1.5)  # longer than lock_timeout
        assert thread.is_alive() and outcome == []
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '500ms'")
            worker.execute("UPDATE proxies SET is_blocked = is_blocked WHERE is_in_use")  # rows the holder did not lock
            worker.execute("INSERT INTO catalog_tasks (status) VALUES ('pending')")
            worker.execute("INSERT INTO object_tasks (status) VALUES ('pending')")
        holder.commit()
        thread.join(30)
    assert outcome == ["ok"]
    assert version(database) == target


def test_the_offline_script_keeps_a_lock_timeout_on_every_step(fresh_database):
    """--sql: the deploy lock, then SET lock_timeout; only CONCURRENTLY runs without it, and the pg_cron steps' own
    instructions set it in pg_cron's database too."""
    database = fresh_database()
    for args in (("upgrade", "head"), ("downgrade", f"{REVISIONS[-1]}:base")):
        script = alembic_cli("-x", f"lock_timeout={LOCK_TIMEOUT}", *args, "--sql", env={"DATABASE_URL": database.url})
        assert script.returncode == 0, script.stderr
        # The deploy lock is polled for up to deploy_wait; every step after it has lock_timeout.
        assert script.stdout.startswith("\\set ON_ERROR_STOP on\n\nDO $proxy_leases_deploy$")
        assert f"$proxy_leases_deploy$;\n\nSET lock_timeout = '{LOCK_TIMEOUT}';" in script.stdout
        without = False
        for statement in re.split(r";\n", re.sub(r"(?m)^--[^\n]*\n", "", script.stdout)):
            statement = statement.strip()
            if statement == "SET lock_timeout = 0":
                without = True
            elif statement.startswith("SELECT set_config('lock_timeout'"):
                without = False
            elif without and statement:
                assert re.match(r"(CREATE INDEX CONCURRENTLY|DROP INDEX CONCURRENTLY|COMMENT ON INDEX|COMMIT|BEGIN)",
                                statement), f"runs without lock_timeout: {statement[:80]}"
        assert not without
        cron_steps = script.stdout.count("-- pg_cron:")
        assert cron_steps == 3
        assert script.stdout.count(f"--   SET lock_timeout = '{LOCK_TIMEOUT}';") == cron_steps


OFFLINE_CASES = [(d, r) for (d, r), blockers in BLOCKERS.items() if not blockers[0].in_cron_database]


@pytest.mark.parametrize("direction, rev", OFFLINE_CASES, ids=[f"{d}-{r}" for d, r in OFFLINE_CASES])
def test_an_offline_step_applied_with_psql_behind_a_held_lock_fails_fast(fresh_database, pg_server, direction, rev):
    database = fresh_database()
    start, target = start_and_target(direction, rev)
    prepare(database, start)
    script = alembic_cli("-x", f"lock_timeout={LOCK_TIMEOUT}", direction, f"{start}:{target}", "--sql",
                         env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    before = snapshot(database)
    holder = hold(pg_server, database, BLOCKERS[direction, rev][0])
    try:
        began = time.monotonic()
        applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database.url], input=script.stdout,
                                 capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    finally:
        holder.rollback()
        holder.close()
    assert applied.returncode != 0 and took < BOUND
    assert "lock timeout" in applied.stderr or "could not lock" in applied.stderr, applied.stderr
    assert snapshot(database) == before


def test_the_backfill_downgrade_does_not_queue_the_fleet_behind_its_lock_request(fresh_database):
    """0004_lease_backfill's downgrade takes ACCESS EXCLUSIVE on proxies (ALTER TABLE ... DROP CONSTRAINT) in
    the short attempts of 0003_lease_locks.sql, as every other such step does. Forced interleaving: one open
    reader holds proxies; while the downgrade waits for it, a worker's read of proxies still goes through
    (within one 200 ms attempt), and the downgrade gives up cleanly at lock_timeout. Until 0.21 it asked for
    the lock directly, and the worker's read stalled for the whole lock_timeout (3 s here)."""
    database = fresh_database()
    prepare(database, "0004_lease_backfill")
    with database.connect(autocommit=False) as reader:
        reader.execute(PROXIES_READER.sql)
        outcome, _, thread = in_thread(lambda: database.downgrade("0003_lease", lock_timeout="3s"), 0)
        wait_for_lock_wait(database, "-- Take every lock this revision (or its downgrade) needs%")  # 0003_lease_locks.sql
        with database.connect() as worker:
            began = time.monotonic()
            worker.execute("SELECT count(*) FROM proxies WHERE NOT is_in_use")
            stalled = time.monotonic() - began
        thread.join(30)
        reader.rollback()
    print(f"\na worker's read of proxies stalled {stalled:.2f}s behind the 0004 downgrade's lock attempts")
    assert stalled < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], SystemExit)
    assert "could not lock" in str(outcome[0])
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0004_lease_backfill"


# ----------------------------------------------------------------------------------------------
# 2. A failure in the middle of a step (or at its very end) leaves the previous revision intact.
# ----------------------------------------------------------------------------------------------

INJECT = """
CREATE SCHEMA inject;
CREATE TABLE inject.plan (fail_at integer NOT NULL);
CREATE TABLE inject.seen (n integer NOT NULL, tag text NOT NULL);
INSERT INTO inject.plan VALUES (FAIL_AT);
CREATE FUNCTION inject.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(nullif(current_setting('inject.n', true), ''), '0')::integer + 1;
BEGIN
    PERFORM set_config('inject.n', n::text, false);   -- the session's count: CONCURRENTLY commits on its own
    IF n = (SELECT fail_at FROM inject.plan) THEN
        RAISE EXCEPTION 'injected failure at DDL command % (%)', n, tg_tag;
    END IF;
    INSERT INTO inject.seen VALUES (n, tg_tag);
END
$$;
CREATE EVENT TRIGGER inject_failure ON ddl_command_end EXECUTE FUNCTION inject.on_ddl();
"""
REMOVE_INJECT = "DROP EVENT TRIGGER inject_failure; DROP SCHEMA inject CASCADE"

ALEMBIC_VERSION = ("CREATE TABLE IF NOT EXISTS proxy_leases_alembic_version (version_num varchar(32) NOT NULL, "
                   "CONSTRAINT proxy_leases_alembic_version_pkc PRIMARY KEY (version_num))")
FAIL_AT_THE_END = """
CREATE FUNCTION public.inject_fail_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected failure: proxy_leases_alembic_version not updated'; END $$;
CREATE TRIGGER inject_fail_version BEFORE INSERT OR UPDATE OR DELETE ON proxy_leases_alembic_version
    FOR EACH ROW EXECUTE FUNCTION public.inject_fail_version();
"""
REMOVE_FAIL_AT_THE_END = "DROP TRIGGER inject_fail_version ON proxy_leases_alembic_version; DROP FUNCTION public.inject_fail_version()"

# The steps that commit part of their work before they end, by design (docs/install.md, "The revisions"):
# what a failure after that point may leave behind, besides which the database must be as it was.
INDEXES = {"0002_partial_indexes": ("catalog_tasks_processing_worker_idx", "object_tasks_processing_worker_idx",
                                    "proxies_held_worker_idx"),
           "0008_pool_indexes": ("proxies_free_rotation_idx", "proxies_cooldown_idx")}


def committed_part(direction: str, rev: str, before: dict, after: dict) -> None:
    """Assert that `after` differs from `before` only in what the step commits before it ends."""
    assert after["version"] == before["version"]
    if rev in INDEXES:  # each CONCURRENTLY statement commits: indexes built or dropped so far (maybe INVALID)
        ours = re.compile("|".join(INDEXES[rev]))
        for key in ("catalog", "extra"):
            assert [line for line in after[key] if not ours.search(line)] == \
                   [line for line in before[key] if not ours.search(line)]
        assert {k: v for k, v in after.items() if k not in ("catalog", "extra")} == \
               {k: v for k, v in before.items() if k not in ("catalog", "extra")}
    elif (direction, rev) == ("upgrade", "0007_lease_api_backfill"):
        # The tokens commit before the validation (and each VALIDATE commits on its own).
        validated = re.compile(r"^constraint proxies\.proxies_(lease_token|block)_consistent: .* valid=")
        assert [line for line in after["catalog"] if not validated.search(line)] == \
               [line for line in before["catalog"] if not validated.search(line)]
        strip = lambda rows: [{k: v for k, v in row[0].items() if k != "lease_token"} for row in rows]
        assert strip(after["proxies"]) == strip(before["proxies"])
        assert all(row[0]["lease_token"] is not None for row in after["proxies"] if row[0]["is_in_use"])
        assert {k: v for k, v in after.items() if k not in ("catalog", "proxies")} == \
               {k: v for k, v in before.items() if k not in ("catalog", "proxies")}
    else:
        assert after == before


PARTLY_COMMITTED = {(d, r) for d, r in STEPS if r in INDEXES} | {("upgrade", "0007_lease_api_backfill")}
# The steps injected in the middle only: every other step, a new revision's included, is also failed at
# its end, when Alembic records it.
MIDDLE_ONLY = {"0001_fleet_schema", "0004_lease_backfill", "0012_stuck_rule_set_based"}
INJECTIONS = ([(d, r, "middle") for d, r in STEPS if r not in CRON_REVISIONS]
              + [(d, r, "end") for d, r in STEPS if r in CRON_REVISIONS or (d, r) in PARTLY_COMMITTED
                 or r not in MIDDLE_ONLY])


@pytest.mark.parametrize("direction, rev, where", INJECTIONS, ids=[f"{d}-{r}-{w}" for d, r, w in INJECTIONS])
def test_a_step_that_fails_midway_leaves_the_previous_revision_intact(fresh_database, pg_server, direction, rev, where):
    """middle: an event trigger raises at the step's middle DDL command. end: a trigger on proxy_leases_alembic_version
    raises when Alembic records the step, after everything else, pg_cron's job included."""
    cron = "auto" if rev in CRON_REVISIONS else "off"
    start, target = start_and_target(direction, rev)
    reference, database = fresh_database(), fresh_database()
    try:
        for db in (reference, database):
            prepare(db, start, cron=cron)
        if where == "middle":
            reference.run(INJECT.replace("FAIL_AT", "0"))
            run_step(reference, direction, rev, cron=cron)
            commands = reference.all("SELECT n, tag FROM inject.seen ORDER BY n")
            assert commands, f"{direction} {rev} runs no DDL: nothing to fail in its middle"
            fail_at = (len(commands) + 1) // 2
            database.run(INJECT.replace("FAIL_AT", str(fail_at)))
            expected = f"injected failure at DDL command {fail_at} ({commands[fail_at - 1][1]})"
        else:
            run_step(reference, direction, rev, cron=cron)
            database.run(ALEMBIC_VERSION)
            database.run(FAIL_AT_THE_END)
            expected = "injected failure: proxy_leases_alembic_version not updated"
        reference_catalog = catalog(reference)
        before, jobs = snapshot(database), cron_jobs(pg_server, database)

        with pytest.raises(Exception, match=re.escape(expected)):
            run_step(database, direction, rev, cron=cron)

        after = snapshot(database)
        if (direction, rev) in PARTLY_COMMITTED:
            committed_part(direction, rev, before, after)
        else:
            assert after == before
        assert cron_jobs(pg_server, database) == jobs, "pg_cron's job changed by a step that did not happen"

        database.run(REMOVE_INJECT if where == "middle" else REMOVE_FAIL_AT_THE_END)
        run_step(database, direction, rev, cron=cron)  # the step runs again, and ends where it should
        assert version(database) == target
        assert catalog(database) == reference_catalog
        def generic(db):
            return [tuple(str(v).replace(db.name, "<db>") for v in job[1:]) for job in cron_jobs(pg_server, db)]
        assert generic(database) == generic(reference)
    finally:
        for db in (reference, database):
            drop_cron_jobs(pg_server, db)


CRON_SCHEDULING = [("upgrade", "0005_sweep_schedule"), ("upgrade", "0009_maintenance_schedule"),
                   ("downgrade", "0009_maintenance_schedule"), ("upgrade", "0011_cron_history_retention")]


@pytest.mark.parametrize("direction, rev", CRON_SCHEDULING, ids=[f"{d}-{r}" for d, r in CRON_SCHEDULING])
def test_a_pg_cron_step_whose_new_job_is_refused_keeps_the_old_job_and_the_revision(
        fresh_database, pg_server, direction, rev):
    """pg_cron refuses the new job after the old one was unscheduled (a trigger on cron.job, in pg_cron's
    database): with cron=require the step stops, and the old job is still there, untouched."""
    database = fresh_database()
    start, _ = start_and_target(direction, rev)
    prepare(database, start, cron="auto")
    before, jobs = snapshot(database), cron_jobs(pg_server, database)
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("""CREATE FUNCTION public.inject_refuse_job() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN RAISE EXCEPTION 'injected: job % refused', NEW.jobname; END $$""")
        conn.execute("CREATE TRIGGER inject_refuse_job BEFORE INSERT ON cron.job FOR EACH ROW "
                     f"WHEN (NEW.jobname LIKE '%.{database.name}') EXECUTE FUNCTION public.inject_refuse_job()")
        try:
            with pytest.raises(Exception, match="injected: job .* refused"):
                run_step(database, direction, rev, cron="require")
        finally:
            conn.execute("DROP TRIGGER inject_refuse_job ON cron.job")
            conn.execute("DROP FUNCTION public.inject_refuse_job()")
    try:
        assert snapshot(database) == before
        assert cron_jobs(pg_server, database) == jobs
    finally:
        drop_cron_jobs(pg_server, database)
