"""The fresh-install script (`proxy-leases sql`) and the pg_cron script (`proxy-leases sql --cron`).

Applied with psql, the fresh script must leave exactly what an online `proxy-leases upgrade` leaves: the
catalog (definitions, tables, columns, defaults, constraints, indexes, triggers, comments, rights, roles,
sequences), the settings row, the revision record, and the same rows, so that a sweep of the incident's
pool frees the same proxies. The plan behind it is derived from the revisions: a new revision's files
are in it, or the plan says why it cannot place them.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import psycopg
import pytest

from proxy_leases.migrations import fresh_install
from proxy_leases.migrations.pg_cron import MAINTENANCE_COMMAND, history_command, history_job_name, job_name
from tests.helpers import past_the_grace, sweep
from tools.harness import (CRON_DATABASE, HEAD, ROOT, Database, alembic_cli, load_legacy_incident, pool_figures,
                           proxy_leases_cli)

# Everything of the catalog that proxy-leases makes, without OIDs or times.
CATALOG = """
SELECT 'function ' || p.oid::regprocedure || ' owner=' || pg_get_userbyid(p.proowner) || E'\\n'
       || pg_get_functiondef(p.oid) || E'\\nrights: '
       || array_to_string(ARRAY(SELECT x::text FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) x
                                ORDER BY 1), ' ')
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT format('relation %s kind=%s owner=%s persistence=%s options=%s rights: %s', c.oid::regclass, c.relkind,
              pg_get_userbyid(c.relowner), c.relpersistence, c.reloptions,
              array_to_string(ARRAY(SELECT x::text FROM unnest(coalesce(c.relacl, acldefault('r', c.relowner))) x
                                    ORDER BY 1), ' '))
       || CASE WHEN c.relkind = 'v' THEN E'\\n' || pg_get_viewdef(c.oid) ELSE '' END
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT format('column %s.%s #%s %s notnull=%s default=%s identity=%s generated=%s rights: %s', a.attrelid::regclass,
              a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, array_to_string(a.attacl, ' '))
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
 WHERE a.attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace) AND a.attnum > 0
   AND NOT a.attisdropped
UNION ALL
SELECT format('constraint %s on %s: %s validated=%s deferrable=%s', conname, conrelid::regclass,
              pg_get_constraintdef(oid), convalidated, condeferrable)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT format('index %s: %s valid=%s ready=%s', indexrelid::regclass, pg_get_indexdef(indexrelid), indisvalid, indisready)
  FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
UNION ALL
SELECT format('trigger %s on %s: %s enabled=%s', tgname, tgrelid::regclass, pg_get_triggerdef(oid), tgenabled)
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT format('sequence %s: %s start=%s increment=%s min=%s max=%s cache=%s cycle=%s', seqrelid::regclass,
              format_type(seqtypid, NULL), seqstart, seqincrement, seqmin, seqmax, seqcache, seqcycle)
  FROM pg_sequence
UNION ALL
SELECT format('comment on %s: %s', pg_describe_object(classoid, objoid, objsubid), description)
  FROM pg_description d
 WHERE (classoid = 'pg_class'::regclass AND objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace))
    OR (classoid = 'pg_proc'::regclass AND objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace))
    OR (classoid = 'pg_trigger'::regclass)
    OR (classoid = 'pg_constraint'::regclass AND objoid IN (SELECT oid FROM pg_constraint
                                                            WHERE connamespace = 'public'::regnamespace))
UNION ALL
SELECT format('role %s login=%s createrole=%s comment=%s members=%s', rolname, rolcanlogin, rolcreaterole,
              shobj_description(oid, 'pg_authid'),
              (SELECT array_agg(m.member::regrole::text ORDER BY 1) FROM pg_auth_members m WHERE m.roleid = r.oid))
  FROM pg_roles r WHERE rolname LIKE 'proxy_leases%'
UNION ALL
SELECT 'settings ' || to_jsonb(s)::text FROM proxy_lease_settings s
UNION ALL
SELECT 'revision ' || version_num FROM proxy_leases_alembic_version
UNION ALL
SELECT format('fleet table %s created=%s', table_name, created) FROM proxy_leases_adopted_tables
ORDER BY 1
"""

# The rows, without what differs from one run to the next (times, token values), but with how they relate.
PROXY_ROWS = """
SELECT id, to_jsonb(p) - ARRAY(SELECT column_name::text FROM information_schema.columns
                               WHERE table_name = 'proxies' AND (data_type LIKE 'timestamp%'
                                                                 OR column_name LIKE '%lease_token')),
       (SELECT jsonb_object_agg(key, value IS NOT NULL AND value <> 'null')
          FROM jsonb_each(to_jsonb(p)) WHERE key IN (SELECT column_name FROM information_schema.columns
                                                     WHERE table_name = 'proxies' AND (data_type LIKE 'timestamp%'
                                                           OR column_name LIKE '%lease_token'))),
       leased_until - leased_at, renewed_at = leased_at
  FROM proxies p ORDER BY id
"""
TASK_ROWS = """
SELECT '{table}', to_jsonb(t) - 'heartbeat_at' - 'created_at', heartbeat_at IS NULL FROM {table} t ORDER BY id
"""


def catalog(database: Database) -> list[str]:
    return [row[0] for row in database.all(CATALOG)]


def rows(database: Database) -> list[tuple]:
    found = database.all(PROXY_ROWS)
    for table in ("catalog_tasks", "object_tasks"):
        found += database.all(TASK_ROWS.format(table=table))
    # In the order of their transactions; within one, in a fixed order: one statement's rows (a sweep's
    # releases) are written in the order of its plan, which autovacuum's ANALYZE can change in one
    # database and not the other.
    found += database.all("SELECT event, reason, proxy_id FROM proxy_lease_events "
                          "ORDER BY xmin::text::bigint, event, reason, proxy_id")
    return found


def fresh_script(database: Database, *args: str) -> str:
    made = proxy_leases_cli("sql", *args, env={"DATABASE_URL": database.url})
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"-- proxy-leases ") and "fresh install" in made.stderr
    return made.stdout


def psql(url: str, script: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-X", "-q", url], input=script, capture_output=True, text=True, timeout=timeout)


def applied(database: Database, script: str) -> subprocess.CompletedProcess:
    done = psql(database.url, script)
    assert done.returncode == 0, done.stderr
    return done


def odd_rows(database: Database) -> None:
    """Rows no rule could read before proxy-leases, and a proxy held and blocked at once: what the backfills
    and the triggers they fired in the replay are about."""
    database.run("UPDATE proxies SET is_blocked = true WHERE id IN (1, 2)")      # held by live workers
    database.run("UPDATE proxies SET worker_id = NULL WHERE id = 45")            # in use by nobody
    database.run("UPDATE proxies SET is_in_use = NULL WHERE id = 46")            # in use unknown
    database.run("UPDATE proxies SET is_in_use = false WHERE id = 47")           # a worker, not in use
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'b77514be_3', is_blocked = true WHERE id = 80")


# --- the plan, without a database ------------------------------------------------------------------------

def test_the_plan_holds_every_file_the_revisions_run_and_each_definition_once():
    plan = fresh_install.build_plan()
    assert plan.head == HEAD
    run = {name for step in plan.steps if step.kind != "cron" for name in step.files}
    included = set(plan.files)
    # A new revision's files are in the plan, or left out as an earlier version of something it keeps.
    assert included | set(plan.superseded) == run
    assert not included & set(plan.superseded)
    assert set(plan.superseded.values()) <= included
    versioned = [name for name in plan.files if fresh_install.VERSIONED.fullmatch(name)]
    objects = Counter(name.rsplit(".v", 1)[0] for name in versioned)
    assert [name for name, count in objects.items() if count > 1] == []
    # ... and no revision ran a later version of one than the plan keeps.
    for earlier, head in plan.superseded.items():
        assert earlier.rsplit(".v", 1)[0] == head.rsplit(".v", 1)[0]
        assert int(earlier.rsplit(".v", 1)[1][:-4]) < int(head.rsplit(".v", 1)[1][:-4])
    # Every file but the lock files once; the lock file once per transaction, the last one for phase 2.
    repeated = [name for name, count in Counter(plan.files).items() if count > 1]
    assert all(fresh_install.locked_tables(fresh_install.sql_files.read_sql(name)) for name in repeated)
    assert plan.lock_file == [name for step in plan.steps for name in step.files if name.endswith("_locks.sql")][-1]
    # The pg_cron steps are the cron script's, not this one's.
    assert {step.revision for step in plan.cron_steps} >= {"0005_sweep_schedule", "0009_maintenance_schedule",
                                                            "0011_cron_history_retention"}


def test_the_files_that_change_rows_under_triggers_are_reviewed_and_run_before_any_trigger():
    plan = fresh_install.build_plan()
    phase1 = [name for group in plan.phase1 for name in group.files]
    for name in fresh_install.REVIEWED_DATA_STEPS:
        assert name in phase1, name
    # Phase 1 creates no trigger that would fire on them: the only ones are proxy-leases' own tables'.
    triggered = set().union(*(fresh_install.triggered_tables(fresh_install.sql_files.read_sql(name))
                              for name in phase1))
    assert triggered <= {"proxy_lease_settings", "proxy_lease_events"}
    # An unreviewed backfill stops the plan, naming the file.
    reviewed = dict(fresh_install.REVIEWED_DATA_STEPS)
    del fresh_install.REVIEWED_DATA_STEPS["0007_lease_api_backfill.sql"]
    try:
        with pytest.raises(fresh_install.PlanError, match="0007_lease_api_backfill.sql writes rows of proxies"):
            fresh_install.build_plan()
    finally:
        fresh_install.REVIEWED_DATA_STEPS.update(reviewed)


def test_a_revision_that_uses_op_itself_stops_the_plan(tmp_path):
    # The plan loads each revision afresh: a revision file that calls op.add_column.
    copy = tmp_path / "versions"
    copy.mkdir()
    for path in (ROOT / "proxy_leases" / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        if path.name.startswith(HEAD):
            text = text.replace("def upgrade() -> None:\n", "def upgrade() -> None:\n    op.add_column('proxies', None)\n")
        (copy / path.name).write_text(text)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(fresh_install.MIGRATIONS))
    config.set_main_option("version_locations", str(copy))
    config.set_main_option("path_separator", "os")
    with pytest.raises(fresh_install.PlanError, match=f"revision {HEAD}: upgrade\\(\\) uses op.add_column itself"):
        fresh_install.build_plan(ScriptDirectory.from_config(config))


def test_the_script_creates_each_function_once_where_the_replay_replaces_them_again_and_again(fresh_database):
    database = fresh_database()
    script = fresh_script(database)
    replay = proxy_leases_cli("sql", "--replay", env={"DATABASE_URL": database.url})
    assert replay.returncode == 0, replay.stderr
    header = re.compile(r"^CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE) (?:public\.)?(\w+)\(([^)]*)\)", re.M)
    created = Counter((name, " ".join(args.split())) for name, args in header.findall(script))
    replayed = Counter((name, " ".join(args.split())) for name, args in header.findall(replay.stdout))
    assert set(created) == set(replayed)
    assert [key for key, count in created.items() if count > 1] == []
    assert sum(replayed.values()) > 2 * sum(created.values())
    assert script.count("CREATE OR REPLACE VIEW public.stuck_proxies") == 1
    # One marker per file, a header that says what it is, and psql told to stop at the first error.
    plan = fresh_install.build_plan()
    assert re.findall(r"^-- file: (\S+)$", script, re.M) == plan.files
    assert script.startswith(f"-- proxy-leases ") and f"fresh install at {HEAD}" in script.splitlines()[0]
    assert "\\set ON_ERROR_STOP on" in script
    print(f"\nfresh install: {script.count(chr(10))} lines, {len(script.encode()) / 1024:.0f} KB, "
          f"{sum(created.values())} CREATE FUNCTION/PROCEDURE; replay: {replay.stdout.count(chr(10))} lines, "
          f"{len(replay.stdout.encode()) / 1024:.0f} KB, {sum(replayed.values())}")


def test_the_version_table_is_created_as_alembic_creates_it(fresh_database):
    database = fresh_database()
    script = fresh_script(database)
    replay = alembic_cli("upgrade", "head", "--sql", env={"DATABASE_URL": database.url})
    assert replay.returncode == 0, replay.stderr
    ddl = re.compile(r"CREATE TABLE proxy_leases_alembic_version \((.*?)\);", re.S)
    [alembics] = ddl.findall(replay.stdout.split("-- Running upgrade", 1)[0].split("BEGIN;", 1)[1])
    [ours] = ddl.findall(script)
    assert " ".join(ours.split()) == " ".join(alembics.split())
    assert f"INSERT INTO proxy_leases_alembic_version (version_num) VALUES ('{HEAD}');" in script


# --- applied with psql ------------------------------------------------------------------------------------

def test_on_an_empty_database_it_installs_what_the_online_upgrade_does(fresh_database):
    online, offline = fresh_database(), fresh_database()
    online.upgrade(cron="off")
    done = applied(offline, fresh_script(offline))
    assert catalog(offline) == catalog(online)
    assert offline.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert offline.one("SELECT count(*) FROM acquire_proxy('c1_1')") == 0
    last = done.stdout.strip().splitlines()
    assert last[-2].startswith(f"proxy-leases {fresh_install.__version__}: installed {HEAD} in database {offline.name} (")
    assert "catalog_tasks (created), object_tasks (created), proxies (created)" in last[-2]
    assert last[-1].startswith("proxy-leases: NOT SCHEDULED: the pg_cron job is not scheduled")


@pytest.mark.parametrize("odd", [False, True], ids=["incident", "incident with half-held and held-and-blocked rows"])
def test_on_the_incident_it_adopts_the_tables_and_a_sweep_frees_what_online_frees(fresh_database, odd):
    online, offline = fresh_database(), fresh_database()
    for database in (online, offline):
        load_legacy_incident(database)
        if odd:
            odd_rows(database)
    online.upgrade(cron="off")
    done = applied(offline, fresh_script(offline, "--cron", "off"))
    if not odd:   # psql shows the backfill's NOTICE, as an online upgrade passes it on
        assert "0004_lease_backfill gives 60 held proxies a lease from now" in done.stderr
    assert "proxy-leases: pg_cron left alone (cron=off)" in done.stdout
    assert catalog(offline) == catalog(online)
    assert rows(offline) == rows(online)
    if odd:
        assert offline.one("SELECT blocked_at IS NOT NULL FROM proxies WHERE id = 80")

    results = []
    for database in (online, offline):
        held = {row[0] for row in database.all("SELECT id FROM proxies WHERE is_in_use")}
        past_the_grace(database)
        freed = sweep(database)
        still = {row[0] for row in database.all("SELECT id FROM proxies WHERE is_in_use")}
        results.append((freed, sorted(held - still), pool_figures(database)))
    assert results[0] == results[1]
    if not odd:
        assert results[1][0] == 16 and results[1][2] == (100, 44, 27, 29)
    assert rows(offline) == rows(online)


def test_it_refuses_a_database_where_proxy_leases_is_installed(fresh_database):
    database = fresh_database()
    database.upgrade("0016_decide_after_lock", cron="off")
    script = fresh_script(database)
    before = catalog(database)
    refused = psql(database.url, script)
    assert refused.returncode == 3
    assert ("ERROR:  proxy-leases is already installed in database "
            f"{database.name} (revision 0016_decide_after_lock, recorded in proxy_leases_alembic_version)") in refused.stderr
    assert "HINT:  Print the upgrade from where the database is instead: proxy-leases sql 0016_decide_after_lock:head" \
        in refused.stderr
    assert "DETAIL:  This script installs proxy-leases" in refused.stderr and "Nothing was changed." in refused.stderr
    assert catalog(database) == before
    assert database.one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0

    # An install from before 0.17, recorded in alembic_version.
    database.run("ALTER TABLE proxy_leases_alembic_version RENAME TO alembic_version")
    database.run("ALTER TABLE alembic_version RENAME CONSTRAINT proxy_leases_alembic_version_pkc TO alembic_version_pkc")
    refused = psql(database.url, script)
    assert refused.returncode == 3
    assert "(revision 0016_decide_after_lock, recorded in alembic_version)" in refused.stderr
    assert "proxy-leases sql 0016_decide_after_lock:head" in refused.stderr


def test_stopped_midway_it_runs_again_to_the_end(fresh_database):
    online, offline = fresh_database(), fresh_database()
    for database in (online, offline):
        load_legacy_incident(database)
    online.upgrade(cron="off")
    script = fresh_script(offline, "--lock-timeout", "1s")
    with offline.connect(autocommit=False) as fleet:
        fleet.execute("SELECT FROM proxies LIMIT 1")       # an open transaction that read proxies
        stopped = psql(offline.url, script)
    assert stopped.returncode == 3
    assert "could not lock proxies, catalog_tasks and object_tasks within lock_timeout 1s" in stopped.stderr
    assert offline.one("SELECT to_regclass('proxy_leases_adopted_tables') IS NOT NULL")   # step 1 stays
    assert offline.one("SELECT to_regclass('proxy_lease_settings')") is None               # step 3 did not

    again = applied(offline, script)
    assert "proxy-leases: step 1 of" in again.stdout and "was finished by an earlier run: skipped" in again.stdout
    assert "an earlier run of this script stopped midway" in again.stderr
    assert catalog(offline) == catalog(online)
    assert rows(offline) == rows(online)


def test_a_downgrade_to_base_leaves_a_database_the_script_installs_in(fresh_database):
    database, reference = fresh_database(), fresh_database()
    reference.upgrade(cron="off")
    database.upgrade(cron="off")
    database.downgrade("base", cron="off")
    assert database.one("SELECT count(*) FROM proxy_leases_alembic_version") == 0     # kept, empty
    applied(database, fresh_script(database))
    assert catalog(database) == catalog(reference)


# --- the pg_cron script -----------------------------------------------------------------------------------

def cron_jobs(pg_server, dbname: str) -> list[tuple]:
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        found = conn.execute("SELECT jobname, schedule, command, database, username, active FROM cron.job "
                             "WHERE jobname IN (%s, %s) ORDER BY jobname",
                             (job_name(dbname), history_job_name(dbname))).fetchall()
    return [tuple(str(value).replace(dbname, "<db>") for value in row) for row in found]


def unschedule(pg_server, *dbnames: str) -> None:
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        for dbname in dbnames:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname IN (%s, %s)",
                         (job_name(dbname), history_job_name(dbname)))


@pytest.mark.pg_cron
def test_the_pg_cron_script_schedules_the_jobs_an_online_upgrade_does(fresh_database, pg_server):
    if not pg_server.preload_pg_cron:
        pytest.skip("needs pg_cron, which the session's server does not preload")
    online, offline = fresh_database(), fresh_database()
    try:
        online.upgrade(cron="auto")
        applied(offline, fresh_script(offline))
        made = proxy_leases_cli("sql", "--cron", env={"DATABASE_URL": offline.url})
        assert made.returncode == 0, made.stderr
        script = made.stdout
        assert script.count("\n") < 60
        assert "in the database named by cron.database_name" in script and "SET lock_timeout = '5s';" in script
        done = applied(Database(pg_server.url(CRON_DATABASE)), script)
        assert done.stdout.strip().splitlines()[-1] == (
            f"proxy-leases: scheduled {job_name(offline.name)} and {history_job_name(offline.name)} in database "
            f"{CRON_DATABASE} as postgres")
        assert cron_jobs(pg_server, offline.name) == cron_jobs(pg_server, online.name)
        assert cron_jobs(pg_server, offline.name) == [
            (history_job_name("<db>"), "17 * * * *", history_command("<db>", "7 days"), CRON_DATABASE, "postgres",
             "True"),
            (job_name("<db>"), "* * * * *", MAINTENANCE_COMMAND, "<db>", "postgres", "True")]
        # Run again, it replaces both jobs, as a second upgrade would.
        applied(Database(pg_server.url(CRON_DATABASE)), script)
        assert len(cron_jobs(pg_server, offline.name)) == 2

        # In a database without pg_cron, it says where to run it, and changes nothing.
        wrong = psql(offline.url, script)
        assert wrong.returncode == 3
        assert f"ERROR:  proxy-leases: pg_cron is not installed in database {offline.name}" in wrong.stderr
        assert "HINT:  Run this script in the database named by cron.database_name" in wrong.stderr
    finally:
        unschedule(pg_server, online.name, offline.name)


def test_the_pg_cron_script_takes_the_schedule_and_retention_options(fresh_database):
    database = fresh_database()
    made = proxy_leases_cli("sql", "--cron", "--cron-schedule", "*/2 * * * *", "--cron-history-retention", "3 days",
                            "--lock-timeout", "2s", env={"DATABASE_URL": database.url})
    assert made.returncode == 0, made.stderr
    assert (f"SELECT cron.schedule_in_database('{job_name(database.name)}', '*/2 * * * *', "
            f"'{MAINTENANCE_COMMAND}', '{database.name}');") in made.stdout
    assert "interval ''3 days''" in made.stdout and "SET lock_timeout = '2s';" in made.stdout
    assert "\\if" not in made.stdout


# --- the command line ----------------------------------------------------------------------------------------

def test_the_command_line_prints_the_fresh_install_the_replay_or_the_pg_cron_script(fresh_database):
    database = fresh_database()
    env = {"DATABASE_URL": database.url}
    for args in ([], ["head"], ["base:head"]):
        made = proxy_leases_cli("sql", *args, env=env)
        assert made.returncode == 0 and made.stdout.startswith("-- proxy-leases "), (args, made.stderr)
    for args in (["--replay"], ["0005_sweep_schedule:head"], ["0003_lease"]):
        made = proxy_leases_cli("sql", *args, env=env)
        assert made.returncode == 0, (args, made.stderr)
        assert made.stdout.startswith("\\set ON_ERROR_STOP on\n\nDO $proxy_leases_deploy$"), args
    upto = proxy_leases_cli("sql", "--replay", "0003_lease", env=env)
    assert "-- Running upgrade 0002_partial_indexes -> 0003_lease" in upto.stdout
    assert "0004_lease_backfill" not in upto.stdout.split("0003_lease\n", 1)[1]

    # The fresh script connects to nothing: it needs no URL. The pg_cron script names the database.
    assert proxy_leases_cli("sql").returncode == 0
    nameless = proxy_leases_cli("sql", "--cron")
    assert nameless.returncode == 1 and "give its URL with --url or DATABASE_URL" in nameless.stderr
    for args, message in ((["--cron", "bogus"], "--cron 'bogus': expected auto, require or off"),
                          (["--cron", "0003_lease"], "--cron '0003_lease'"),
                          (["0003_lease", "--cron"], "the pg_cron script holds the head's jobs"),
                          (["--lock-timeout", "5x"], "lock_timeout='5x': expected a number and a unit")):
        refused = proxy_leases_cli("sql", *args, env=env)
        assert refused.returncode == 1 and message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
