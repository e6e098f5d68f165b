"""proxy_leases_health, the maintenance's own trace, and `proxy-leases check` / `status` (0021_maintenance_health).

Each check is made to fail by the fault it exists for (a run late, failed or dead; a proxy held past
its lease; a low pool; quarantine; pruning behind; an old revision) and to pass again once that is
mended. The commands run as the package installs them, in a process of their own.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.helpers import acquire, as_role, upgraded_incident, wait_for_lock_wait
from tools.harness import proxy_leases_cli, revisions
from tools.throwaway_postgres import free_port

CHECKS = ["revision", "maintenance_on_time", "maintenance_succeeded", "no_proxy_held_past_lease",
          "free_pool_above_floor", "quarantine_below_share", "audit_pruned"]

HEAD = revisions()[-1]


def health(database) -> dict[str, tuple[bool, str]]:
    return {name: (ok, value) for name, ok, value in database.all("SELECT name, ok, value FROM proxy_leases_health")}


def failing(database) -> list[str]:
    return [name for name, (ok, _) in health(database).items() if not ok]


@pytest.fixture
def pool(db):
    """A database at head with 100 free proxies and one maintenance run behind it: every check passes."""
    db.run("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, 100) n")
    db.run("CALL run_lease_maintenance()")
    return db


def test_every_check_is_one_row_in_order_and_a_healthy_pool_passes_them_all(pool):
    rows = pool.all("SELECT name, ok, value, threshold, action FROM proxy_leases_health")
    assert [row[0] for row in rows] == CHECKS
    assert all(ok for _, ok, *_ in rows), rows
    assert all(value and threshold and action for _, _, value, threshold, action in rows)
    assert health(pool)["revision"] == (True, HEAD)
    assert health(pool)["free_pool_above_floor"] == (True, "100 free of 100")


def test_a_database_where_nothing_ran_the_maintenance_says_so_instead_of_failing(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, 100) n")
    assert failing(db) == ["maintenance_on_time", "maintenance_succeeded"]
    assert health(db)["maintenance_on_time"] == (False, "no run recorded")
    assert "pg_cron" in db.one("SELECT action FROM proxy_leases_health WHERE name = 'maintenance_on_time'")


def test_each_run_is_recorded_with_what_it_did(pool):
    holder = acquire(pool, "8b4f59aa_1")
    pool.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (holder[0],))
    assert pool.one("CALL run_lease_maintenance()") == (0, 1, 0)
    last = pool.one("SELECT id, finished_at >= started_at, db_user = session_user, requeued_tasks, released_proxies, "
                    "unblocked_proxies, pruned_events, failures FROM proxy_lease_maintenance_runs ORDER BY id DESC LIMIT 1")
    assert last[1:] == (True, True, 0, 1, 0, 0, [])
    assert pool.one("SELECT count(*) FROM proxy_lease_maintenance_runs") == 2


def test_a_run_two_periods_and_30_seconds_ago_is_late(pool):
    pool.run("UPDATE proxy_lease_maintenance_runs SET started_at = now() - interval '2 minutes 20 seconds', "
             "finished_at = now() - interval '2 minutes 20 seconds'")
    assert failing(pool) == []
    pool.run("UPDATE proxy_lease_maintenance_runs SET started_at = now() - interval '2 minutes 31 seconds', "
             "finished_at = now() - interval '2 minutes 31 seconds'")
    assert failing(pool) == ["maintenance_on_time"]
    assert health(pool)["maintenance_on_time"][1] == "last run started 00:02:31 ago"
    # The period is the operator's: a schedule of every 5 minutes is on time at 2.5 minutes.
    pool.run("UPDATE proxy_lease_settings SET maintenance_period = '5 minutes'")
    assert failing(pool) == []


def test_a_failed_step_fails_the_check_naming_it_and_the_next_good_run_mends_it(pool):
    # A rule of the fleet's own refuses the unblock of a cooled-down proxy: that step fails, the others run.
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'x', blocked_until = now() WHERE id = 5")
    pool.run("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'blocks are forever here' USING ERRCODE = '55000'; END $$""")
    pool.run("CREATE TRIGGER forever BEFORE UPDATE OF is_blocked ON proxies FOR EACH ROW "
             "WHEN (OLD.is_blocked AND NOT NEW.is_blocked) EXECUTE FUNCTION refuse()")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        pool.run("CALL run_lease_maintenance()")
    assert failing(pool) == ["maintenance_succeeded"]
    run, value = pool.one("SELECT max(id), (SELECT value FROM proxy_leases_health WHERE name = 'maintenance_succeeded') "
                          "FROM proxy_lease_maintenance_runs")
    assert value == f"run {run} failed: unblock_cooled_down_proxies(): blocks are forever here (SQLSTATE 55000)"
    assert pool.one("SELECT requeued_tasks, released_proxies, unblocked_proxies, pruned_events "
                    "FROM proxy_lease_maintenance_runs WHERE id = %s", (run,)) == (0, 0, None, 0)
    pool.run("DROP TRIGGER forever ON proxies")
    pool.run("CALL run_lease_maintenance()")
    assert failing(pool) == []


def test_a_run_that_never_finished_is_seen_once_a_period_has_passed(pool):
    pool.run("INSERT INTO proxy_lease_maintenance_runs (started_at) VALUES (now() - interval '30 seconds')")
    assert failing(pool) == []      # still running, as far as anyone can tell
    pool.run("UPDATE proxy_lease_maintenance_runs SET started_at = now() - interval '61 seconds' "
             "WHERE finished_at IS NULL")
    assert failing(pool) == ["maintenance_succeeded"]
    assert health(pool)["maintenance_succeeded"][1].endswith("never finished")


def test_a_run_blocked_for_minutes_is_still_running_not_dead(pool):
    """Forced interleaving: the requeue step waits for a lock on a task table; meanwhile the run is minutes old."""
    holder = pool.connect(autocommit=False)
    holder.execute("LOCK TABLE catalog_tasks IN EXCLUSIVE MODE")     # writes wait, reads (the view's) do not
    worker = threading.Thread(target=lambda: pool.run("CALL run_lease_maintenance()"))
    worker.start()
    try:
        wait_for_lock_wait(pool, "CALL run_lease_maintenance()%")
        running = pool.one("SELECT max(id) FROM proxy_lease_maintenance_runs")
        pool.run("UPDATE proxy_lease_maintenance_runs SET started_at = now() - interval '3 minutes' WHERE id = %s",
                 (running,))
        assert health(pool)["maintenance_on_time"] == (False, f"run {running} still running, started 00:03:00 ago")
        assert health(pool)["maintenance_succeeded"] == (True, f"run {running - 1} succeeded")
    finally:
        holder.rollback()
        holder.close()
        worker.join(timeout=30)
    assert health(pool)["maintenance_succeeded"] == (True, f"run {running} succeeded")


def test_recording_the_run_never_fails_it_a_locked_table_costs_a_second_and_a_warning(pool):
    """Forced interleaving: the trace's table is locked away; the run waits for it, gives up, and runs its steps."""
    holder = pool.connect(autocommit=False)
    holder.execute("LOCK TABLE proxy_lease_maintenance_runs IN ACCESS EXCLUSIVE MODE")
    result: dict = {}

    def maintain() -> None:
        with pool.connect() as conn:
            notices = []
            conn.add_notice_handler(lambda diag: notices.append((diag.severity_nonlocalized, diag.message_primary)))
            started = time.monotonic()
            result["counts"] = conn.execute("CALL run_lease_maintenance()").fetchone()
            result["seconds"] = time.monotonic() - started
            result["notices"] = notices

    worker = threading.Thread(target=maintain)
    worker.start()
    try:
        wait_for_lock_wait(pool, "CALL run_lease_maintenance()%")
        worker.join(timeout=10)
        assert not worker.is_alive()
    finally:
        holder.rollback()
        holder.close()
        worker.join()
    assert result["counts"] == (0, 0, 0)
    assert 1.0 <= result["seconds"] < 5
    # One WARNING: a run whose start was not recorded does not try (and wait) to record its end.
    assert [severity for severity, message in result["notices"] if "is not recorded" in message] == ["WARNING"]
    assert pool.one("SELECT count(*) FROM proxy_lease_maintenance_runs") == 1    # only the fixture's


def test_a_role_that_may_not_write_the_trace_still_runs_its_steps(pool):
    """Another scheduler's role, given the four steps but not the trace: the run warns, and does its work."""
    pool.run("CREATE ROLE health_scheduler LOGIN")
    pool.run("GRANT EXECUTE ON FUNCTION requeue_stale_tasks(interval), release_stuck_proxies(), "
             "unblock_cooled_down_proxies(), prune_lease_events(integer) TO health_scheduler")
    pool.run("GRANT SELECT, UPDATE ON catalog_tasks, object_tasks TO health_scheduler")
    holder = acquire(pool, "8b4f59aa_1")
    pool.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (holder[0],))
    try:
        with pool.connect() as conn:
            notices = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
            conn.execute("SET ROLE health_scheduler")
            assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 1, 0)
        assert [message for message in notices if "is not recorded" in message] == [
            "run_lease_maintenance: this run is not recorded: permission denied for table proxy_lease_maintenance_runs "
            "(SQLSTATE 42501)"]
        assert pool.one("SELECT count(*) FROM proxy_lease_maintenance_runs") == 1    # only the fixture's
    finally:
        pool.run("DROP OWNED BY health_scheduler; DROP ROLE health_scheduler")


def test_the_trace_keeps_the_newest_1440_runs(pool):
    pool.run("INSERT INTO proxy_lease_maintenance_runs (started_at, finished_at) "
             "SELECT now() - n * interval '1 minute', now() - n * interval '1 minute' FROM generate_series(1, 1500) n")
    pool.run("CALL run_lease_maintenance()")
    newest = pool.one("SELECT max(id) FROM proxy_lease_maintenance_runs")
    assert pool.one("SELECT count(*), min(id) FROM proxy_lease_maintenance_runs") == (1440, newest - 1439)


def test_a_proxy_held_a_period_past_its_lease_fails_until_the_sweep_frees_it(pool):
    proxy = acquire(pool, "8b4f59aa_1")[0]
    pool.run("UPDATE proxies SET leased_until = now() - interval '59 seconds' WHERE id = %s", (proxy,))
    assert failing(pool) == []
    pool.run("UPDATE proxies SET leased_until = now() - interval '3 minutes' WHERE id = %s", (proxy,))
    assert failing(pool) == ["no_proxy_held_past_lease"]
    assert health(pool)["no_proxy_held_past_lease"][1] == "1, the oldest lease ended 00:03:00 ago"
    pool.run("CALL run_lease_maintenance()")
    assert failing(pool) == []


def test_the_free_pool_floor_fails_below_it_and_null_switches_it_off(pool):
    for n in range(81):
        acquire(pool, f"c1_{n}")
    assert failing(pool) == ["free_pool_above_floor"]
    assert health(pool)["free_pool_above_floor"] == (False, "19 free of 100")
    pool.run("UPDATE proxy_lease_settings SET free_pool_floor = 19")
    assert failing(pool) == []
    pool.run("UPDATE proxy_lease_settings SET free_pool_floor = NULL")
    assert pool.one("SELECT ok, threshold FROM proxy_leases_health WHERE name = 'free_pool_above_floor'") == (
        True, "off (free_pool_floor is NULL)")


def test_quarantine_counts_only_the_strike_rules_blocks(pool):
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'banned by the site' WHERE id <= 50")
    assert failing(pool) == []
    # Three strikes in a row quarantine a proxy (tg_proxies__keep_lease_consistent).
    pool.run("UPDATE proxies SET strike_count = 3 WHERE id BETWEEN 51 AND 70")
    assert failing(pool) == ["quarantine_below_share"]
    assert health(pool)["quarantine_below_share"] == (False, "20 quarantined of 100")
    pool.run("UPDATE proxy_lease_settings SET quarantined_share_limit = 0.25")
    assert failing(pool) == []


def test_audit_pruning_behind_by_more_than_a_day_fails_until_pruned(pool):
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "VALUES (now() - interval '30 days 23 hours', 1, 'granted', 'acquired')")
    assert failing(pool) == []
    pool.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
             "VALUES (now() - interval '31 days 1 hour', 1, 'granted', 'acquired')")
    assert failing(pool) == ["audit_pruned"]
    pool.run("CALL run_lease_maintenance()")
    assert failing(pool) == []


def test_a_database_at_another_revision_fails_the_revision_check(pool):
    pool.run("UPDATE proxy_leases_alembic_version SET version_num = '0020_task_exit_inline_rule'")
    assert health(pool)["revision"] == (False, "0020_task_exit_inline_rule")


@pytest.mark.parametrize("setting, value, words", [
    ("maintenance_period", "'0 seconds'", "maintenance_period must be positive"),
    ("maintenance_period", "NULL", "maintenance_period must not be NULL"),
    ("free_pool_floor", "-1", "free_pool_floor must not be negative, got -1"),
    ("quarantined_share_limit", "0", "quarantined_share_limit must be above 0 and at most 1, got 0"),
    ("quarantined_share_limit", "1.5", "quarantined_share_limit must be above 0 and at most 1, got 1.5"),
    ("quarantined_share_limit", "'NaN'", "quarantined_share_limit must be above 0 and at most 1, got NaN"),
])
def test_a_bad_health_setting_is_refused_by_name_with_a_hint(db, setting, value, words):
    with pytest.raises(psycopg.Error) as refused:
        db.run(f"UPDATE proxy_lease_settings SET {setting} = {value}")
    assert refused.value.diag.message_primary.startswith(words)
    assert refused.value.diag.column_name == setting and refused.value.diag.message_hint


# -- a monitoring role --------------------------------------------------------------------------------------------

@pytest.fixture
def monitor(pool):
    """A login role with nothing but pg_monitor, as postgres_exporter's usually is."""
    pool.run("CREATE ROLE health_monitor LOGIN IN ROLE pg_monitor")
    yield as_role(pool.url, "health_monitor")
    pool.run("DROP OWNED BY health_monitor; DROP ROLE health_monitor")


def test_a_monitoring_role_reads_the_health_and_the_pool_and_nothing_more(pool, monitor):
    with psycopg.connect(monitor, autocommit=True) as conn:
        assert [row[0] for row in conn.execute("SELECT name FROM proxy_leases_health WHERE ok")] == CHECKS
        assert conn.execute("SELECT total, free FROM proxy_pool_status").fetchone() == (100, 100)
        assert conn.execute("SELECT count(*) FROM proxy_lease_maintenance_runs").fetchone() == (1,)
        for forbidden in ("SELECT count(*) FROM proxies", "SELECT count(*) FROM proxy_lease_events",
                          "SELECT acquire_proxy('c1_1')", "DELETE FROM proxy_lease_maintenance_runs"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)


def test_check_as_a_monitoring_role_passes_and_exits_0(pool, monitor):
    result = proxy_leases_cli("check", "--url", monitor)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "7 of 7 checks pass"


def test_check_exits_1_naming_the_failing_check_and_what_to_do(pool):
    pool.run("UPDATE proxy_lease_maintenance_runs SET started_at = now() - interval '10 minutes', "
             "finished_at = now() - interval '10 minutes'")
    result = proxy_leases_cli("check", env={"DATABASE_URL": pool.url})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "6 of 7 checks pass; failing: maintenance_on_time"
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAIL"))
    assert "maintenance_on_time" in lines[failed] and "last run started 00:10:" in lines[failed]
    assert "proxy-leases sql --cron" in lines[failed + 1]


def test_check_exits_2_where_proxy_leases_is_not_installed_or_not_at_this_head(fresh_database):
    bare = fresh_database()
    result = proxy_leases_cli("check", "--url", bare.url)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"proxy-leases is not installed in database {bare.name}" in result.stderr
    older = fresh_database()
    older.upgrade("0020_task_exit_inline_rule")
    result = proxy_leases_cli("check", "--url", older.url)
    assert result.returncode == 2
    assert f"database {older.name} is at 0020_task_exit_inline_rule, not at {HEAD}" in result.stderr


def test_check_exits_2_for_a_role_without_the_monitoring_grants(pool):
    pool.run("CREATE ROLE health_nobody LOGIN")
    try:
        result = proxy_leases_cli("check", "--url", as_role(pool.url, "health_nobody"))
        assert result.returncode == 2
        assert "(SQLSTATE 42501)" in result.stderr and "GRANT pg_monitor TO" in result.stderr
    finally:
        pool.run("DROP ROLE health_nobody")


def test_status_prints_the_incident_the_way_its_report_did(fresh_database):
    database = upgraded_incident(fresh_database())
    result = proxy_leases_cli("status", "--url", database.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:5] == [
        "Total proxies:     100",
        "In use:             60  (4 containers holding proxies)",
        "Blocked:            27",
        "Free:               13",
        "Stuck:              16  (held, and freed by the next sweep)"]
    assert "  - 8b4f59aa: 15 proxies held (15 stuck), 0 tasks processing, 15 workers" in result.stdout
    database.run("SELECT release_stuck_proxies()")
    after = proxy_leases_cli("status", "--url", database.url).stdout.splitlines()
    assert after[1:5] == ["In use:             44  (3 containers holding proxies)", "Blocked:            27",
                          "Free:               29", "Stuck:               0  (held, and freed by the next sweep)"]


def test_check_exits_2_when_no_database_is_given_or_reachable(tmp_path):
    nothing = proxy_leases_cli("check")
    assert (nothing.returncode, nothing.stdout) == (2, "") and "no database given" in nothing.stderr
    closed = proxy_leases_cli("check", "--url", f"postgresql://nobody@127.0.0.1:{free_port()}/fleet")
    assert closed.returncode == 2 and "cannot connect to PostgreSQL at 127.0.0.1" in closed.stderr
    assert "Traceback" not in closed.stderr


def test_plot_refuses_a_period_that_is_no_number_of_hours_and_a_file_it_cannot_write(pool, tmp_path):
    for hours in ("0", "-1", "nan", "six"):
        refused = proxy_leases_cli("plot", "--url", pool.url, "--hours", hours, "--output", str(tmp_path / "p.png"))
        assert refused.returncode == 2 and "a number of hours above 0" in refused.stderr, hours
    unwritable = proxy_leases_cli("plot", "--url", pool.url, "--output", str(tmp_path / "missing" / "p.png"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr


def test_the_revision_is_read_only_from_the_owners_own_table_never_one_another_role_made(pool):
    """proxy_leases_installed_revision runs as its owner: a table of that name made by anyone else, in a
    schema searched first or as a temporary table, is never read (nor its policies run with the owner's rights)."""
    pool.run("CREATE SCHEMA deploy")
    pool.run("ALTER TABLE proxy_leases_alembic_version SET SCHEMA deploy")
    pool.run("CREATE ROLE health_intruder LOGIN")
    try:
        pool.run("CREATE TABLE public.proxy_leases_alembic_version (version_num varchar(32))")
        pool.run("INSERT INTO public.proxy_leases_alembic_version VALUES ('forged')")
        pool.run("ALTER TABLE public.proxy_leases_alembic_version OWNER TO health_intruder")
        assert pool.one("SELECT proxy_leases_installed_revision()") == HEAD
        with pool.connect() as conn:
            conn.execute("CREATE TEMPORARY TABLE proxy_leases_alembic_version AS SELECT 'temporary'::text AS version_num")
            assert conn.execute("SELECT proxy_leases_installed_revision()").fetchone() == (HEAD,)
    finally:
        pool.run("DROP TABLE public.proxy_leases_alembic_version")
        pool.run("DROP ROLE health_intruder")
        pool.run("ALTER TABLE deploy.proxy_leases_alembic_version SET SCHEMA public")
        pool.run("DROP SCHEMA deploy")
