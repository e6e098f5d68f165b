"""What a sweep costs at 1,000,000 proxies and 10,000,000 tasks, beside the incident report's query.

    .venv/bin/python bench/sweep_at_scale.py [--proxies N] [--tasks N] [--runs N]

A throwaway PostgreSQL; the fleet's data loaded at the baseline revision (the tables as they are
today), the report's query timed there, then `alembic upgrade head` and the sweeper timed on the same
data. 45 live workers (a task in processing each), 16 proxies stuck on a dead container, half the
task history with NULL worker ids. Each figure is a median of calls each rolled back, so every call
sees the same data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tests.helpers import alembic  # noqa: E402
from tools.throwaway_postgres import ThrowawayPostgres  # noqa: E402

REPORT_QUERY = """
UPDATE proxies SET is_in_use = false, worker_id = NULL
 WHERE is_in_use = true
   AND worker_id NOT IN (
       SELECT COALESCE(worker_id, '') FROM catalog_tasks WHERE status = 'processing'
       UNION
       SELECT COALESCE(worker_id, '') FROM object_tasks WHERE status = 'processing')
"""


def median_ms(conn: psycopg.Connection, query: str, runs: int) -> float:
    timings = []
    for _ in range(runs):
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            conn.execute(query).fetchall() if query.lstrip().upper().startswith("SELECT") else conn.execute(query)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def load_legacy_fleet(conn: psycopg.Connection, proxies: int, tasks: int) -> None:
    """The pool before the upgrade: 45 live workers, 16 proxies stuck on a dead container."""
    conn.execute("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, %s) n", (proxies,))
    half = tasks // 2
    for table in ("catalog_tasks", "object_tasks"):
        conn.execute(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
                     "SELECT (ARRAY['done','failed','pending'])[1 + n %% 3], "
                     "       CASE WHEN n %% 2 = 0 THEN 'old_' || n END, now() - interval '1 day' "
                     "  FROM generate_series(1, %s) n", (half,))
    step = proxies // 64
    conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'live_' || id WHERE id %% %s = 0 AND id <= %s",
                 (step, step * 45))
    conn.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                 "SELECT 'processing', worker_id, now() FROM proxies WHERE is_in_use")
    conn.execute("UPDATE proxies SET is_in_use = true, worker_id = '8b4f59aa_' || id "
                 "WHERE id IN (SELECT id FROM proxies WHERE NOT is_in_use ORDER BY id LIMIT 16)")
    conn.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    report_runs = max(3, args.runs // 40)

    with ThrowawayPostgres(preload_pg_cron=False) as pg:
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = pg.url("bench")
        alembic(url, "upgrade", "0001_fleet_schema", cron="off")
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            load_legacy_fleet(conn, args.proxies, args.tasks)
            print(f"loaded {args.proxies:,} proxies and {args.tasks:,} tasks in {time.perf_counter() - started:.0f} s")
            print(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]}")
            report = median_ms(conn, REPORT_QUERY, report_runs)

        started = time.perf_counter()
        alembic(url, "upgrade", "head", cron="off")
        print(f"alembic upgrade head on that data: {time.perf_counter() - started:.1f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            # As if the orphan grace had passed: the sweep checks every held proxy against the tasks.
            conn.execute("UPDATE proxies SET leased_at = leased_at - interval '2 minutes' WHERE is_in_use")
            conn.execute("VACUUM ANALYZE proxies")
            held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone()[0]
            sweep_16 = median_ms(conn, "SELECT release_stuck_proxies()", args.runs)
            freed = conn.execute("SELECT release_stuck_proxies()").fetchone()[0]
            sweep = median_ms(conn, "SELECT release_stuck_proxies()", args.runs)
            print(f"{held} proxies held, {freed} of them stuck")

    print(f"the report's query, legacy schema, 16 stuck: {report:9.3f} ms (median of {report_runs})")
    print(f"release_stuck_proxies(), 16 stuck:           {sweep_16:9.3f} ms (median of {args.runs})")
    print(f"release_stuck_proxies(), nothing to free:    {sweep:9.3f} ms (median of {args.runs})")
    print(f"the report's query / the sweep, 16 stuck:    {report / sweep_16:9.0f} x")


if __name__ == "__main__":
    main()
