"""Scenario 1: what a sweep costs as the tables grow, beside the incident report's query.

For each pool size P: a database at the baseline revision (the tables as the fleet has them today)
with P proxies and 10 × P tasks (mostly history, half of it with NULL worker ids), 45 live workers
(a task in processing each) and 16 proxies stuck on a dead container. The report's query is timed
there, as written; then `alembic upgrade head` on the same data, and release_stuck_proxies() is
timed freeing the 16, and again with nothing to free. Every call runs in a transaction that is
rolled back, so each sees the same data.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import SERVER_MS, Harness, check, insert_proxies, insert_task_history, median_ms

REPORT_QUERY = """
UPDATE proxies SET is_in_use = false, worker_id = NULL
 WHERE is_in_use = true
   AND worker_id NOT IN (
       SELECT COALESCE(worker_id, '') FROM catalog_tasks WHERE status = 'processing'
       UNION
       SELECT COALESCE(worker_id, '') FROM object_tasks WHERE status = 'processing')
"""
SWEEP = "SELECT release_stuck_proxies()"
# The same statements, reporting how long they ran on the server (see median_ms).
TIMED_REPORT_QUERY = f"WITH report AS ({REPORT_QUERY} RETURNING 1) SELECT count(*), {SERVER_MS} FROM report"
TIMED_SWEEP = f"SELECT freed, {SERVER_MS} FROM (SELECT release_stuck_proxies() AS freed OFFSET 0) sweep"
LIVE_WORKERS = 45
STUCK = 16


def load_legacy_fleet(conn, proxies: int, tasks: int) -> None:
    """The pool before the upgrade: 45 live workers spread over the table, 16 proxies stuck on a dead container."""
    insert_proxies(conn, proxies)
    half = tasks // 2
    insert_task_history(conn, half)
    step = proxies // 64
    conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'live_' || id WHERE id %% %s = 0 AND id <= %s",
                 (step, step * LIVE_WORKERS))
    conn.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                 "SELECT 'processing', worker_id, now() FROM proxies WHERE is_in_use")
    conn.execute("UPDATE proxies SET is_in_use = true, worker_id = '8b4f59aa_' || id "
                 "WHERE id IN (SELECT id FROM proxies WHERE NOT is_in_use ORDER BY id LIMIT %s)", (STUCK,))
    conn.execute("VACUUM ANALYZE")


def first_call_on_a_new_connection(harness: Harness, dbname: str) -> float:
    """The server time of a sweep freeing the 16 as the first statement of a new session (rolled back)."""
    with harness.connect(dbname) as conn:
        with conn.transaction(force_rollback=True):
            return float(conn.execute(TIMED_SWEEP).fetchone()[-1])


def measure_size(harness: Harness, proxies: int) -> dict:
    tasks = 10 * proxies
    name = f"sweep_{proxies}"
    harness.database(name)
    with harness.connect(name) as conn:
        started = time.perf_counter()
        load_legacy_fleet(conn, proxies, tasks)
        loaded_s = time.perf_counter() - started
        report_runs = 3 if harness.quick else (5 if proxies >= 1_000_000 else 21)
        report = median_ms(conn, TIMED_REPORT_QUERY, report_runs)
    started = time.perf_counter()
    harness.upgrade(name)
    upgrade_s = time.perf_counter() - started
    sweep_runs = 21 if harness.quick else 201
    with harness.connect(name) as conn:
        # As if the orphan grace had passed: the sweep checks every held proxy against the tasks.
        conn.execute("UPDATE proxies SET leased_at = leased_at - interval '2 minutes' WHERE is_in_use")
        conn.execute("VACUUM ANALYZE proxies")
        held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone()[0]
        stuck = conn.execute("SELECT count(*) FROM stuck_proxies").fetchone()[0]
        sweep_stuck = median_ms(conn, TIMED_SWEEP, sweep_runs, vacuum="proxies")
        # pg_cron runs each sweep in a new session, whose first call plans everything afresh.
        first_calls = [first_call_on_a_new_connection(harness, name) for _ in range(11 if not harness.quick else 3)]
        freed = conn.execute(SWEEP).fetchone()[0]
        sweep_idle = median_ms(conn, TIMED_SWEEP, sweep_runs, vacuum="proxies")
        still_held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone()[0]
        # What every client figure includes besides the work: a statement's round trip.
        round_trip = median_ms(conn, f"SELECT {SERVER_MS}", sweep_runs)
    harness.drop(name)
    check((held, stuck, freed, still_held) == (LIVE_WORKERS + STUCK, STUCK, STUCK, LIVE_WORKERS),
          f"P={proxies}: held {held}, stuck {stuck}, freed {freed}, left held {still_held}")
    return {
        "proxies": proxies, "tasks": tasks, "loaded_s": loaded_s, "upgrade_s": upgrade_s,
        "report_ms": report["server"], "report_client_ms": report["client"], "report_runs": report_runs,
        "sweep_stuck_ms": sweep_stuck["server"], "sweep_stuck_client_ms": sweep_stuck["client"],
        "sweep_idle_ms": sweep_idle["server"], "sweep_idle_client_ms": sweep_idle["client"], "sweep_runs": sweep_runs,
        "sweep_stuck_first_call_ms": statistics.median(first_calls), "first_calls": len(first_calls),
        "round_trip_ms": round_trip["client"],
    }


def run(harness: Harness) -> dict:
    sizes = (1_000, 10_000) if harness.quick else (1_000, 10_000, 100_000, 1_000_000)
    rows = []
    for proxies in sizes:
        rows.append(measure_size(harness, proxies))
        row = rows[-1]
        print(f"  sweep P={proxies:>9,}: report query {row['report_ms']:9.3f} ms, sweep freeing {STUCK} "
              f"{row['sweep_stuck_ms']:.3f} ms, idle {row['sweep_idle_ms']:.3f} ms", flush=True)
    return {"sizes": rows, "live_workers": LIVE_WORKERS, "stuck": STUCK}
