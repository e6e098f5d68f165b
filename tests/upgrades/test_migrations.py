"""Installing, removing and re-installing proxy-leases through Alembic, as an operator would."""

import subprocess

import psycopg
import pytest

from proxy_leases.migrations.sql_files import SQL_DIR, pinned_checksums
from tests.helpers import catalog
from tools.harness import CRON_DATABASE, HEAD, ROOT, alembic_cli, revisions

PUBLIC_FUNCTIONS = {
    "release_stuck_proxies",
    "release_container_proxies",
    "worker_has_processing_task",
    "tg_proxies__keep_lease_consistent",
    "tg_tasks__release_proxy_on_task_exit",
    "tg_tasks__renew_proxy_lease_on_heartbeat",
    "tg_proxy_lease_settings__keep_the_row",
    "tg_proxy_lease_settings__apply_event_recording",
    "tg_proxy_lease_settings__reject_bad_values",
    "tg_proxy_lease_settings__place_heartbeat_triggers",
    "place_heartbeat_triggers",
    "tg_proxies__announce_available",
    "tg_proxies__announce_inserted",
    "proxy_address",
    "acquire_proxy",
    "renew_proxy_lease",
    "release_proxy",
    "block_proxy",
    "unblock_proxy",
    "unblock_cooled_down_proxies",
    "requeue_stale_tasks",
    "run_lease_maintenance",
    "tg_proxies__record_lease_events",
    "tg_proxies__record_lease_events_on_truncate",
    "tg_proxy_lease_events__append_only",
    "summarize_proxy_holders",
    "prune_lease_events",
    "raise_if_lease_arguments_swapped",
    "proxy_leases_head_revision",
    "proxy_leases_installed_revision",
}


def test_upgrade_on_an_empty_database_creates_the_fleet_tables_and_everything_else(fresh_database):
    database = fresh_database()
    database.upgrade(cron="off")

    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert database.all("SELECT table_name, created FROM proxy_leases_adopted_tables ORDER BY 1") == [
        ("catalog_tasks", True), ("object_tasks", True), ("proxies", True)]
    functions = {row[0] for row in database.all(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")}
    assert functions == PUBLIC_FUNCTIONS


def test_the_head_revision_the_database_reports_is_the_packages(db):
    """proxy_leases_health compares the installed revision with proxy_leases_head_revision(): every new
    revision must install a new version of that function naming itself."""
    assert db.one("SELECT proxy_leases_head_revision()") == HEAD
    assert db.one("SELECT proxy_leases_installed_revision()") == HEAD


def test_every_public_object_is_documented(db):
    undocumented = db.all("""
        SELECT 'function ' || p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
        UNION ALL
        SELECT 'table ' || c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
           AND c.relname <> 'proxy_leases_alembic_version' AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'index ' || i.indexrelid::regclass FROM pg_index i
         WHERE i.indrelid::regclass::text IN ('proxies', 'catalog_tasks', 'object_tasks', 'proxy_lease_events')
           AND NOT i.indisprimary AND NOT i.indisunique
           AND obj_description(i.indexrelid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'role ' || r.rolname FROM pg_roles r
         WHERE r.rolname IN ('proxy_leases_worker', 'proxy_leases_operator')
           AND shobj_description(r.oid, 'pg_authid') IS NULL
        UNION ALL
        SELECT 'sequence ' || c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
           AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'column ' || attrelid::regclass || '.' || attname FROM pg_attribute
         WHERE ((attrelid = 'proxies'::regclass
                 AND attname IN ('leased_at', 'leased_until', 'lease_token', 'released_at', 'strike_count',
                                 'blocked_at', 'blocked_until', 'blocked_reason', 'renewed_at'))
             OR (attrelid IN ('proxy_lease_settings'::regclass, 'proxy_lease_events'::regclass)
                 AND attnum > 0 AND NOT attisdropped))
           AND col_description(attrelid, attnum) IS NULL
        UNION ALL
        SELECT 'trigger ' || tgname FROM pg_trigger
         WHERE NOT tgisinternal AND obj_description(oid, 'pg_trigger') IS NULL
        UNION ALL
        SELECT 'view ' || c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'constraint ' || conname FROM pg_constraint
         WHERE conrelid = 'proxies'::regclass AND contype = 'c' AND obj_description(oid, 'pg_constraint') IS NULL
    """)
    assert undocumented == []


def test_round_trip_down_to_base_and_up_again_keeps_an_empty_database_identical(fresh_database):
    database = fresh_database()
    database.upgrade(cron="off")
    installed = catalog(database)
    database.downgrade("base", cron="off")
    assert database.all(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relname NOT IN ('proxy_leases_alembic_version', 'proxy_leases_alembic_version_pkc')") == []
    assert database.one("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace") == 0
    database.upgrade(cron="off")
    assert catalog(database) == installed


@pytest.mark.parametrize("step", list(reversed(revisions()[:-1])))
def test_each_revision_downgrades_to_exactly_what_its_predecessor_installed(fresh_database, step):
    reference = fresh_database()
    reference.upgrade(step, cron="off")
    database = fresh_database()
    database.upgrade(cron="off")
    database.downgrade(step, cron="off")
    assert catalog(database) == catalog(reference)


def test_the_command_line_takes_a_plain_postgresql_url_from_database_url(fresh_database):
    database = fresh_database()
    result = alembic_cli("upgrade", "head", env={"DATABASE_URL": database.url, "PROXY_LEASES_CRON": "off"})
    assert result.returncode == 0, result.stderr
    assert "Running upgrade 0008_pool_indexes -> 0009_maintenance_schedule" in result.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_a_url_that_names_no_database_upgrades_the_one_libpq_picks(fresh_database, pg_server):
    database = fresh_database()
    database.upgrade("0010_lease_events", cron="off")
    server_url = database.url.rsplit("/", 1)[0]
    for cron in ("off", "auto"):       # the pg_cron job commands are built from current_database()
        result = alembic_cli("upgrade", "head", env={"DATABASE_URL": server_url, "PGDATABASE": database.name,
                                                     "PROXY_LEASES_CRON": cron})
        assert result.returncode == 0, result.stderr
        assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
        if cron == "off":
            database.downgrade("0010_lease_events", cron="off")
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM cron.job WHERE jobname = %s AND strpos(command, %s) > 0",
                            (f"proxy_leases_prune_history.{database.name}", f"database = '{database.name}'")
                            ).fetchone() == (1,)
    database.downgrade("0010_lease_events", cron="auto")


def test_the_command_line_without_a_database_says_what_to_set():
    result = alembic_cli("upgrade", "head", env={"DATABASE_URL": ""})
    assert result.returncode != 0
    assert "DATABASE_URL=postgresql://" in result.stderr


def test_offline_script_applied_with_psql_installs_the_same_catalog(fresh_database, pg_server):
    online = fresh_database()
    online.upgrade(cron="off")
    offline = fresh_database()
    script = alembic_cli("upgrade", "head", "--sql",
                         env={"DATABASE_URL": offline.url, "PROXY_LEASES_CRON_SCHEDULE": "*/5 * * * *"})
    assert script.returncode == 0, script.stderr
    assert "%%" not in script.stdout
    assert "RAISE EXCEPTION 'proxy % cannot be taken with only one of is_in_use and worker_id'" in script.stdout
    # The deploy lock first, waited for up to deploy_wait; then every step under the short lock_timeout.
    assert script.stdout.startswith("\\set ON_ERROR_STOP on\n\nDO $proxy_leases_deploy$")
    assert "WHILE NOT pg_try_advisory_lock(hashtext('proxy_leases.upgrade'), 0) LOOP" in script.stdout
    assert "$proxy_leases_deploy$;\n\nSET lock_timeout = '5s';" in script.stdout
    # The lock is released last of all statements; only the summary's comments and \echo follow.
    statements_end = script.stdout.rindex("SELECT pg_advisory_unlock(hashtext('proxy_leases.upgrade'), 0);")
    assert all(line.startswith(("--", "\\echo ")) or not line.strip()
               for line in script.stdout[statements_end:].splitlines()[1:])
    # The step that needs the pg_cron database says exactly what to run there.
    assert (f"cron.schedule_in_database('proxy_leases_sweep.{offline.name}', '*/5 * * * *', "
            f"'SELECT public.release_stuck_proxies()', '{offline.name}')") in script.stdout
    assert (f"cron.schedule_in_database('proxy_leases_sweep.{offline.name}', '*/5 * * * *', "
            f"'CALL public.run_lease_maintenance()', '{offline.name}')") in script.stdout

    applied = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", offline.url],
        input=script.stdout, capture_output=True, text=True, timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    assert catalog(offline) == catalog(online)
    assert offline.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_offline_downgrade_script_is_produced_too(fresh_database):
    database = fresh_database()
    script = alembic_cli("downgrade", f"{HEAD}:base", "--sql", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    assert "DROP FUNCTION public.acquire_proxy(text, interval);" in script.stdout
    assert "DROP FUNCTION public.release_stuck_proxies();" in script.stdout
    assert "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname" in script.stdout


def test_every_sql_file_is_run_by_some_revision():
    revisions = "".join(path.read_text() for path in (ROOT / "proxy_leases" / "migrations" / "versions").glob("*.py"))
    unused = [name for name in pinned_checksums() if f'"{name}"' not in revisions]
    assert unused == []


def test_a_changed_frozen_file_stops_the_upgrade(tmp_path, monkeypatch):
    from proxy_leases.migrations import sql_files

    copy = tmp_path / "sql"
    (copy / sql_files.REVISIONS).mkdir(parents=True)
    (copy / "SHA256SUMS").write_text((SQL_DIR / "SHA256SUMS").read_text())
    edited = sql_files.sql_path("0004_lease_backfill.sql").read_text() + "\n-- edited\n"
    (copy / sql_files.REVISIONS / "0004_lease_backfill.sql").write_text(edited)
    monkeypatch.setattr(sql_files, "SQL_DIR", copy)
    monkeypatch.setattr(sql_files, "CHECKSUMS", copy / "SHA256SUMS")
    with pytest.raises(sql_files.FrozenSqlChanged, match="new file"):
        sql_files.read_sql("0004_lease_backfill.sql")


def psql(url: str, script: str) -> subprocess.CompletedProcess:
    """As docs/install.md says to apply a script: no -v ON_ERROR_STOP=1; the script sets it itself."""
    return subprocess.run(["psql", "-X", "-q", "-f", "-", url], input=script, capture_output=True, text=True,
                          timeout=300)


def test_a_replay_applied_to_a_database_elsewhere_stops_before_changing_anything(fresh_database):
    database = fresh_database()
    database.upgrade(cron="off")
    definition = "SELECT md5(pg_get_functiondef('worker_has_processing_task(text)'::regprocedure))"
    before = database.one(definition)
    script = alembic_cli("upgrade", "0010_lease_events:head", "--sql", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    applied = psql(database.url, script.stdout)
    assert applied.returncode != 0
    assert (f"ERROR:  proxy-leases: this script starts from 0010_lease_events, but the database is at {HEAD}"
            in applied.stderr)
    assert f"HINT:  Print the script from where the database is: proxy-leases sql {HEAD}:head" in applied.stderr
    assert "NOT SCHEDULED" not in applied.stdout
    assert database.one(definition) == before   # 0012's older version was not put back
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_a_replay_stops_at_the_step_that_failed_and_runs_again_to_the_end(fresh_database):
    database = fresh_database()
    database.upgrade("0010_lease_events", cron="off")
    script = alembic_cli("-x", "lock_timeout=1s", "upgrade", "0010_lease_events:head", "--sql",
                         env={"DATABASE_URL": database.url})
    with database.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE proxies IN ACCESS SHARE MODE")   # 0012 needs ACCESS EXCLUSIVE
        applied = psql(database.url, script.stdout)
        holder.execute("ROLLBACK")
    assert applied.returncode != 0 and "lock_timeout" in applied.stderr
    # 0011 (a pg_cron step, comments only) committed; nothing after the failed 0012 ran.
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0011_cron_history_retention"
    assert database.one("SELECT count(*) FROM pg_proc WHERE proname = 'raise_if_lease_arguments_swapped'") == 0
    again = alembic_cli("upgrade", "0011_cron_history_retention:head", "--sql", env={"DATABASE_URL": database.url})
    finished = psql(database.url, again.stdout)
    assert finished.returncode == 0, finished.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
