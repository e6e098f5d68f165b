"""The pool in one query, recovery times as figures, and the LOG lines of every sweep that frees something."""

import re

import psycopg
import pytest

from tests.helpers import acquire, executed_plans, past_the_grace, scans, sweep
from tools.harness import ROOT


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 10) n")
    return db


def status(database):
    return database.one("SELECT total, in_use, blocked, free, stuck FROM proxy_pool_status")


def test_status_splits_the_pool_and_counts_what_the_next_sweep_frees(pool):
    assert status(pool) == (10, 0, 0, 10, 0)
    for n in range(1, 5):
        acquire(pool, f"b77514be_{n}")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES "
             "('processing', 'b77514be_1', now()), ('processing', 'b77514be_2', now()), "
             "('processing', 'e1bf8c63_1', now())")
    pool.run("UPDATE proxies SET is_blocked = true WHERE id IN (9, 10)")
    pool.run("UPDATE proxies SET is_blocked = true WHERE id = 1")          # blocked while held: in use
    assert status(pool) == (10, 4, 2, 4, 0)

    past_the_grace(pool)                                                    # b77514be_3 and _4 have no task
    assert status(pool) == (10, 4, 2, 4, 2)
    assert pool.all("SELECT container_id, workers, proxies_held, tasks_processing, proxies_stuck "
                    "FROM proxy_pool_by_container ORDER BY 1") == [
        ("b77514be", 4, 4, 2, 2), ("e1bf8c63", 1, 0, 1, 0)]
    assert sweep(pool) == 2
    assert status(pool) == (10, 2, 2, 6, 0)


def test_by_container_shows_the_oldest_lease_and_the_last_sign_of_life(pool):
    first = acquire(pool, "8b4f59aa_1")
    acquire(pool, "8b4f59aa_2")
    pool.run("UPDATE proxies SET leased_at = leased_at - interval '1 hour' WHERE id = %s", (first[0],))
    oldest, latest = pool.one("SELECT oldest_lease, latest_renewal FROM proxy_pool_by_container")
    assert oldest == pool.one("SELECT min(leased_at) FROM proxies")
    assert latest == pool.one("SELECT max(renewed_at) FROM proxies")
    assert latest - oldest > pool.one("SELECT interval '59 minutes'")


def test_the_views_read_the_task_tables_only_through_their_partial_indexes_at_a_million_proxies(db):
    """1,000,000 proxies (2,000 held by 100 containers) and 1,000,000 tasks, as the issue asks."""
    db.run("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, 1000000) n")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'c' || (id % 100) || '_' || id WHERE id <= 2000")
    db.run("UPDATE proxies SET is_blocked = true WHERE id BETWEEN 5001 AND 6000")
    for table in ("catalog_tasks", "object_tasks"):
        db.run(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
               "SELECT (ARRAY['done', 'failed', 'pending'])[1 + n % 3], 'old_' || n, now() - interval '1 day' "
               "FROM generate_series(1, 499000) n")
        db.run(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
               "SELECT 'processing', 'c' || (n % 100) || '_' || n, now() FROM generate_series(1, 1000) n")
    for table in ("proxies", "catalog_tasks", "object_tasks"):
        db.run(f"VACUUM ANALYZE {table}")

    past_the_grace(db)                       # the 1,000 holders with no task in processing are now stuck
    for view in ("proxy_pool_status", "proxy_pool_by_container"):
        used = scans(executed_plans(db, f"SELECT * FROM {view}")[1])
        sequential = {relation for node_type, relation, _ in used if node_type == "Seq Scan"}
        assert not sequential & {"catalog_tasks", "object_tasks"}, (view, used)
        indexes = {index for _, _, index in used if index}
        assert {"catalog_tasks_processing_worker_idx", "object_tasks_processing_worker_idx",
                "proxies_held_worker_idx"} <= indexes, (view, used)
    # The by-container view reads no more of proxies than the held ones.
    assert "proxies" not in {relation for node_type, relation, _ in used if node_type == "Seq Scan"}
    assert status(db) == (1000000, 2000, 1000, 997000, 1000)


def reclaim(database, proxy_id, worker, freed_at, renewed_ago, lease_left, reason="lease_expired"):
    """A released event as the trigger writes it, at chosen times."""
    database.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason, worker_id, renewed_at, "
                 "leased_until) VALUES (%s, %s, 'released', %s, %s, %s::timestamptz - %s * interval '1 second', "
                 "%s::timestamptz + %s * interval '1 second')",
                 (freed_at, proxy_id, reason, worker, freed_at, renewed_ago, freed_at, lease_left))


def test_recovery_by_hour_gives_the_distribution_and_the_lost_proxy_seconds(pool):
    reclaim(pool, 1, "dead_1", "2026-11-28 03:05:00+00", 10, 290, "container_restart")
    reclaim(pool, 2, "dead_2", "2026-11-28 03:10:00+00", 20, 280, "requeued")
    reclaim(pool, 3, "dead_3", "2026-11-28 03:59:59+00", 350, -50)
    reclaim(pool, 4, "live_4", "2026-11-28 03:30:00+00", 5000, -4700, "released_by_worker")   # not a reclaim
    reclaim(pool, 5, "dead_5", "2026-11-28 04:00:00+00", 330, -30, "orphaned")

    rows = pool.all("SELECT hour, reclaimed, p50_seconds, p95_seconds, max_seconds, lost_proxy_seconds, "
                    "freed_after_lease_end FROM proxy_recovery_by_hour ORDER BY hour")
    assert [(row[0].isoformat(), *map(float, row[1:])) for row in rows] == [
        ("2026-11-28T03:00:00+00:00", 3, 20.0, 317.0, 350.0, 380.0, 1),   # p95 of 10, 20, 350: 20 + 0.9 * 330
        ("2026-11-28T04:00:00+00:00", 1, 330.0, 330.0, 330.0, 330.0, 1),
    ]


def test_a_reclaim_measures_the_time_since_the_workers_last_renewal(pool):
    proxy_id, _, token, _ = acquire(pool, "8b4f59aa_1")
    pool.one("SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))
    renewed_at = pool.one("SELECT renewed_at FROM proxies WHERE id = %s", (proxy_id,))
    assert pool.one("SELECT release_container_proxies('8b4f59aa')") == 1
    freed_at, last_sign, held_after, reason = pool.one(
        "SELECT freed_at, last_sign_of_life, held_after_last_sign_of_life, reason FROM proxy_recoveries")
    assert (last_sign, held_after, reason) == (renewed_at, freed_at - renewed_at, "container_restart")
    assert freed_at == pool.one("SELECT released_at FROM proxies WHERE id = %s", (proxy_id,))


def log_lines(database, statement):
    """The LOG lines a statement writes to the server log, as a session that asks for them sees them."""
    seen = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda notice: seen.append((notice.severity_nonlocalized, notice.message_primary)))
        conn.execute("SET client_min_messages = log")
        conn.execute(statement)
    return [message for severity, message in seen if severity == "LOG"]


def test_a_sweep_that_frees_something_writes_one_log_line_naming_the_containers(pool):
    for worker in ("8b4f59aa_1", "8b4f59aa_2", "b77514be_16", "e1bf8c63_1"):
        acquire(pool, worker)
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'e1bf8c63_1', now())")
    assert log_lines(pool, "SELECT release_stuck_proxies()") == []
    past_the_grace(pool)
    pool.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE worker_id = 'b77514be_16'")
    assert log_lines(pool, "SELECT release_stuck_proxies()") == [
        "release_stuck_proxies: freed 3 stuck proxies (lease_expired 1, orphaned 2) held by "
        "2 container(s): 8b4f59aa (2), b77514be (1)"]


def test_a_container_clean_up_that_frees_something_writes_one_log_line(pool):
    for worker in ("8b4f59aa_1", "8b4f59aa_2"):
        acquire(pool, worker)
    assert log_lines(pool, "SELECT release_container_proxies('b77514be')") == []
    assert log_lines(pool, "SELECT release_container_proxies('8b4f59aa')") == [
        "release_container_proxies: freed 2 proxies of restarted container 8b4f59aa held by 2 worker(s): "
        "8b4f59aa_1, 8b4f59aa_2"]


def test_the_maintenance_says_what_it_did_in_one_log_line_when_it_did_anything(pool):
    assert log_lines(pool, "CALL run_lease_maintenance()") == []
    acquire(pool, "8b4f59aa_1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
             "VALUES ('processing', '8b4f59aa_1', now() - interval '1 hour')")
    lines = log_lines(pool, "CALL run_lease_maintenance()")
    assert len(lines) == 1, lines
    assert lines[0].startswith("run_lease_maintenance: requeued 1 stale tasks, freed 0 stuck proxies, "
                               "unblocked 0 proxies, pruned 0 events in "), lines


def test_the_log_line_names_at_most_twenty_containers(pool):
    pool.run("INSERT INTO proxies (address) SELECT 'http://more' || n FROM generate_series(1, 30) n")
    for n in range(25):
        acquire(pool, f"c{n:02d}_1")
    past_the_grace(pool)
    (line,) = log_lines(pool, "SELECT release_stuck_proxies()")
    assert line.endswith("25 container(s): " + ", ".join(f"c{n:02d} (1)" for n in range(20)) + " and 5 more"), line


def test_a_monitoring_role_with_only_the_documented_grant_reads_every_view(pool):
    acquire(pool, "c1_1")                 # held, no task: stuck once the grace has passed
    acquire(pool, "c1_2")
    pool.run("INSERT INTO object_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_2', now())")
    past_the_grace(pool)
    page = (ROOT / "docs" / "watching.md").read_text()
    grant = re.search(r"GRANT SELECT ON proxy_pool_status.*? TO monitoring;", page, re.S).group(0)
    pool.run("CREATE ROLE monitoring")
    try:
        pool.run(grant)
        with pool.connect() as conn:
            conn.execute("SET ROLE monitoring")
            assert conn.execute("SELECT in_use, stuck FROM proxy_pool_status").fetchone() == (2, 1)
            assert conn.execute("SELECT proxies_held, tasks_processing, proxies_stuck FROM proxy_pool_by_container"
                                ).fetchall() == [(2, 1, 1)]
            for view in ("stuck_proxies", "proxy_lease_events", "proxy_recoveries", "proxy_recovery_by_hour"):
                conn.execute(f"SELECT * FROM {view}").fetchall()
            for table in ("catalog_tasks", "object_tasks"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT * FROM {table}")
    finally:
        pool.run("DROP OWNED BY monitoring; DROP ROLE monitoring")


def test_a_line_break_in_a_worker_id_cannot_forge_a_log_line(pool):
    # acquire_proxy refuses such ids; the fleet's legacy UPDATE does not.
    for proxy_id, worker in ((1, "dead\nLOG:  all is well_1"), (2, "8b4f59aa_1\nLOG:  all is well")):
        pool.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = %s", (worker, proxy_id))
    past_the_grace(pool)
    assert log_lines(pool, "SELECT release_container_proxies('8b4f59aa')") == [
        "release_container_proxies: freed 1 proxies of restarted container 8b4f59aa held by 1 worker(s): "
        "8b4f59aa_1?LOG:  all is well"]
    assert log_lines(pool, "SELECT release_stuck_proxies()") == [
        "release_stuck_proxies: freed 1 stuck proxies (orphaned 1) held by 1 container(s): dead?LOG:  all is well (1)"]
