"""The sweeper's pg_cron job: scheduled from the pg_cron database, one per fleet database, for real."""

import logging
import time

import psycopg
import pytest

from proxy_leases.migrations.pg_cron import (MAINTENANCE_COMMAND, PgCronUnavailable, _literal, history_command, history_job_name,
                                job_name)
from tools.harness import CRON_DATABASE, HEAD, Database, ThrowawayPostgres, alembic, proxy_leases_cli


def jobs(pg_server, dbname=None):
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        return conn.execute("SELECT jobname, schedule, command, database FROM cron.job "
                            "WHERE %s::text IS NULL OR jobname = %s ORDER BY jobname",
                            (dbname and job_name(dbname), dbname and job_name(dbname))).fetchall()


def test_the_upgrade_schedules_the_sweeper_in_the_pg_cron_database(fresh_database, pg_server):
    database = fresh_database()
    database.upgrade(cron="auto")
    assert jobs(pg_server, database.name) == [
        (f"proxy_leases_sweep.{database.name}", "* * * * *", MAINTENANCE_COMMAND, database.name)]


def test_two_fleet_databases_on_one_server_get_a_job_each(fresh_database, pg_server):
    first, second = fresh_database(), fresh_database()
    first.upgrade(cron="auto")
    second.upgrade(cron="auto")
    assert [row[3] for row in jobs(pg_server, first.name) + jobs(pg_server, second.name)] == [first.name, second.name]

    first.downgrade("0004_lease_backfill", cron="auto")
    assert jobs(pg_server, first.name) == []
    assert len(jobs(pg_server, second.name)) == 1


def test_scheduling_again_replaces_the_job_even_one_pointing_at_another_database(fresh_database, pg_server):
    database = fresh_database()
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        # pg_cron 1.4 re-schedules an existing name without changing its database: replace it instead.
        conn.execute("SELECT cron.schedule_in_database(%s, '0 0 * * *', 'SELECT 1', %s)",
                     (job_name(database.name), CRON_DATABASE))
    database.upgrade(cron="auto")
    database.downgrade("0004_lease_backfill", cron="off")   # off: leaves pg_cron alone
    database.upgrade(cron="auto", cron_schedule="*/2 * * * *")
    assert jobs(pg_server, database.name) == [
        (job_name(database.name), "*/2 * * * *", MAINTENANCE_COMMAND, database.name)]


def test_downgrade_to_base_unschedules(fresh_database, pg_server):
    database = fresh_database()
    database.upgrade(cron="auto")
    database.downgrade("base", cron="auto")
    assert jobs(pg_server, database.name) == []


@pytest.fixture(scope="module")
def server_without_pg_cron():
    with ThrowawayPostgres(preload_pg_cron=False) as server:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fleet")
        yield server


def test_without_pg_cron_the_upgrade_warns_and_succeeds(server_without_pg_cron, caplog):
    database = Database(server_without_pg_cron.url("fleet"))
    with caplog.at_level(logging.WARNING, logger="alembic.proxy_leases"):
        database.upgrade(cron="auto")
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "pg_cron: pg_cron is not in shared_preload_libraries on this server" in warning
    assert warning.rstrip().endswith("cron=auto was given, so the exit status is 0. Fix it as above, or run the "
                                     "maintenance every minute from your own scheduler and pass --cron off "
                                     "(alembic: -x cron=off).")
    database.downgrade("base", cron="auto")


def test_without_pg_cron_the_health_says_nothing_runs_the_maintenance_and_check_exits_1(server_without_pg_cron):
    """No error anywhere: the maintenance checks fail with what to do, the others pass."""
    database = Database(server_without_pg_cron.url("fleet"))
    database.upgrade(cron="auto")
    try:
        database.run("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, 100) n")
        assert database.all("SELECT name, value FROM proxy_leases_health WHERE NOT ok") == [
            ("maintenance_on_time", "no run recorded"), ("maintenance_succeeded", "no run recorded")]
        result = proxy_leases_cli("check", "--url", database.url)
        assert result.returncode == 1 and result.stderr == ""
        assert "`proxy-leases sql --cron` prints the job" in result.stdout
    finally:
        database.run("DELETE FROM proxies")    # the baseline's downgrade drops only empty tables it made
        database.downgrade("base", cron="off")


def test_without_pg_cron_cron_require_fails_the_upgrade(server_without_pg_cron):
    database = Database(server_without_pg_cron.url("fleet"))
    with pytest.raises(PgCronUnavailable, match="cron=require"):
        database.upgrade(cron="require")
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0004_lease_backfill"
    database.downgrade("base", cron="off")


def test_preloaded_pg_cron_without_its_extension_is_created_where_it_lives():
    with ThrowawayPostgres() as server:
        with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fleet")
        alembic(server.url("fleet"), "upgrade", "head", cron="require")
        with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
            assert conn.execute("SELECT jobname, database FROM cron.job ORDER BY 1").fetchall() == [
                ("proxy_leases_prune_history.fleet", CRON_DATABASE), ("proxy_leases_sweep.fleet", "fleet")]


def test_the_scheduled_job_really_requeues_and_frees_and_once_unscheduled_the_health_reports_it_late(
        fresh_database, pg_server):
    """pg_cron 1.4 runs at minute boundaries: this waits for the next one (at most about a minute). Then the
    job is unscheduled by hand, as an operator would, and the fleet's database notices by itself: two
    periods and 30 s after that run (maintenance_period set to 10 s here: 50 s more)."""
    database = fresh_database()
    database.upgrade(cron="auto")
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'c7f1e2d0_' || id")
    database.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = 1")
    database.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                 "VALUES ('processing', 'c7f1e2d0_2', now() - interval '1 hour')")

    deadline = time.monotonic() + 90
    while database.one("SELECT count(*) FROM proxies WHERE is_in_use") > 0:
        assert time.monotonic() < deadline, pg_server.server_log()[-3000:]
        time.sleep(0.5)

    assert database.one("SELECT status, worker_id FROM catalog_tasks") == ("pending", None)
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        runs = conn.execute(
            "SELECT status FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
            "WHERE j.jobname = %s", (job_name(database.name),)).fetchall()
    assert ("succeeded",) in runs and ("failed",) not in runs
    assert database.all("SELECT proxy_id, reason FROM proxy_lease_events WHERE event = 'released' ORDER BY 1") == [
        (1, "lease_expired"), (2, "requeued")]
    # The job's work is in the server log, where cron.job_run_details shows only "CALL".
    while "run_lease_maintenance: requeued 1 stale tasks" not in pg_server.server_log():
        assert time.monotonic() < deadline, pg_server.server_log()[-3000:]
        time.sleep(0.2)
    assert ("release_stuck_proxies: freed 1 stuck proxies (lease_expired 1) held by 1 container(s): c7f1e2d0 (1)"
            in pg_server.server_log())

    # A pool of two proxies; and a period of 10 s, so that the lateness shows within a minute, not three.
    database.run("UPDATE proxy_lease_settings SET free_pool_floor = NULL, maintenance_period = '10 seconds'")
    assert database.all("SELECT name FROM proxy_leases_health WHERE NOT ok") == []
    assert proxy_leases_cli("check", "--url", database.url).returncode == 0
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("SELECT cron.unschedule(%s)", (job_name(database.name),))
    last_start = database.one("SELECT max(started_at) FROM proxy_lease_maintenance_runs")
    while database.one("SELECT ok FROM proxy_leases_health WHERE name = 'maintenance_on_time'"):
        assert time.monotonic() < deadline + 120, "still on time two minutes after the job was unscheduled"
        time.sleep(0.5)
    late_after = database.one("SELECT now() - %s", (last_start,)).total_seconds()
    assert 50 <= late_after < 53      # two periods, and 30 s for pg_cron's start delay
    assert database.one("SELECT max(started_at) FROM proxy_lease_maintenance_runs") == last_start   # nothing ran since
    result = proxy_leases_cli("check", "--url", database.url)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "6 of 7 checks pass; failing: maintenance_on_time"


def test_with_the_job_paused_a_pool_exhausted_by_dead_workers_heals_at_the_next_acquire(fresh_database, pg_server):
    """The scheduler gone (the job paused, as an operator or a failover leaves it): nothing sweeps, and the
    dead workers' leases have run out. The next worker that asks gets a proxy all the same."""
    database = fresh_database()
    database.upgrade(cron="auto")
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = %s",
                     (job_name(database.name),))
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'dead0001_' || id")
    database.run("UPDATE proxies SET leased_until = now() - interval '1 second'")
    assert database.one("SELECT * FROM acquire_proxy('a11ve001_1')") is not None
    assert database.one("SELECT count(*) FROM proxy_lease_events WHERE reason = 'lease_expired'") == 1
    assert database.one("SELECT count(*) FROM proxy_lease_maintenance_runs") == 0    # nothing swept it
    assert database.one("SELECT ok FROM proxy_leases_health WHERE name = 'maintenance_on_time'") is False


def test_pg_crons_run_history_of_this_databases_jobs_is_pruned_and_nobody_elses(fresh_database, pg_server):
    database, neighbour = fresh_database(), fresh_database()
    database.upgrade(cron="auto", cron_history_retention="2 days")
    neighbour.upgrade(cron="auto")
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        jobid = dict(conn.execute("SELECT jobname, jobid FROM cron.job").fetchall())
        ours, theirs = jobid[job_name(database.name)], jobid[job_name(neighbour.name)]
        replaced = max(jobid.values()) + 1000            # a job of ours since re-scheduled under a new jobid
        runs = [(ours, database.name, MAINTENANCE_COMMAND, "3 days"), (ours, database.name, MAINTENANCE_COMMAND, "1 day"),
                (replaced, database.name, MAINTENANCE_COMMAND, "3 days"),
                (theirs, neighbour.name, MAINTENANCE_COMMAND, "3 days"),
                (replaced + 1, database.name, "SELECT 'someone else''s job'", "3 days"),
                # Earlier versions of the pruning jobs themselves, in the pg_cron database: ours and theirs.
                (replaced + 2, CRON_DATABASE, history_command(database.name, "5 days"), "3 days"),
                (replaced + 3, CRON_DATABASE, history_command(neighbour.name, "5 days"), "3 days")]
        for run_jobid, dbname, command, age in runs:
            conn.execute("INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, "
                         "start_time, end_time) VALUES (%s, nextval('cron.runid_seq'), %s, 'postgres', %s, "
                         "'succeeded', now() - %s::interval, now() - %s::interval)",
                         (run_jobid, dbname, command, age, age))
        (prune,) = conn.execute("SELECT command FROM cron.job WHERE jobname = %s",
                                (history_job_name(database.name),)).fetchone()
        assert conn.execute("SELECT schedule, database FROM cron.job WHERE jobname = %s",
                            (history_job_name(database.name),)).fetchone() == ("17 * * * *", CRON_DATABASE)
        conn.execute(prune)
        left = conn.execute("SELECT jobid, end_time > now() - interval '2 days' FROM cron.job_run_details "
                            "WHERE jobid IN (%s, %s, %s, %s, %s, %s) ORDER BY 1, 2",
                            (ours, theirs, replaced, replaced + 1, replaced + 2, replaced + 3)).fetchall()
    assert left == sorted([(ours, True), (theirs, False), (replaced + 1, False), (replaced + 3, False)])

    database.downgrade("0010_lease_events", cron="auto")
    assert history_job_name(database.name) not in [row[0] for row in jobs(pg_server)]
    assert history_job_name(neighbour.name) in [row[0] for row in jobs(pg_server)]


@pytest.mark.parametrize("standard_conforming_strings", ["on", "off"])
def test_names_in_a_job_command_are_quoted_whatever_the_string_syntax(db, standard_conforming_strings):
    with db.connect() as conn:
        conn.execute(f"SET standard_conforming_strings = {standard_conforming_strings}")
        conn.execute("SET escape_string_warning = off")
        for text in ("fleet", "it's", "back\\slash", "a\\'; DROP TABLE proxies; --"):
            assert conn.execute(f"SELECT {_literal(text)}").fetchone() == (text,)


def test_a_malformed_history_retention_stops_the_upgrade_before_anything_is_scheduled(fresh_database, pg_server):
    database = fresh_database()
    database.upgrade("0010_lease_events", cron="off")
    with pytest.raises(SystemExit, match="cron_history_retention='7 dayz'"):
        database.upgrade(cron="auto", cron_history_retention="7 dayz")
    assert history_job_name(database.name) not in [row[0] for row in jobs(pg_server)]


def test_a_superusers_upgrade_warns_that_the_job_will_run_as_a_superuser(fresh_database, caplog):
    database = fresh_database()
    with caplog.at_level(logging.WARNING, logger="alembic.proxy_leases"):
        database.upgrade(cron="require")
    assert "the job runs as postgres, a superuser, because that role ran the upgrade" in caplog.text


def test_an_owner_that_is_not_superuser_gets_a_warning_or_with_the_documented_grants_a_job(
        fresh_database, pg_server, caplog):
    database = fresh_database()
    owner_url = database.url.replace("postgres@", "fleet_owner@")
    database.run("CREATE ROLE fleet_owner LOGIN")
    database.run(f'ALTER DATABASE "{database.name}" OWNER TO fleet_owner')
    database.run("ALTER SCHEMA public OWNER TO fleet_owner")
    try:
        with caplog.at_level(logging.WARNING, logger="alembic.proxy_leases"):
            alembic(owner_url, "upgrade", "head", cron="auto")
        assert "pg_read_all_settings" in caplog.text
        assert jobs(pg_server, database.name) == []

        # The grants docs/operations.md lists, given by a superuser once.
        with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute("GRANT pg_read_all_settings TO fleet_owner")
            conn.execute("GRANT USAGE ON SCHEMA cron TO fleet_owner")
            conn.execute("GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean)"
                         " TO fleet_owner")
        alembic(owner_url, "downgrade", "0004_lease_backfill", cron="auto")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alembic.proxy_leases"):
            alembic(owner_url, "upgrade", "head", cron="require")
        assert "superuser" not in caplog.text
        with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
            assert conn.execute("SELECT username, database FROM cron.job WHERE jobname = %s",
                                (job_name(database.name),)).fetchall() == [("fleet_owner", database.name)]
        alembic(owner_url, "downgrade", "0004_lease_backfill", cron="require")
        assert jobs(pg_server, database.name) == []
    finally:
        with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = 'fleet_owner'")
            conn.execute(f'DROP DATABASE "{database.name}" WITH (FORCE)')
            conn.execute("DROP OWNED BY fleet_owner")
            conn.execute("DROP ROLE fleet_owner")

