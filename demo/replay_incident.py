"""Replay the 2025-12-10 proxy incident on a throwaway server, and watch the database fix it by itself.

What it shows, in order:

1. The pool as the incident report found it, on the fleet's legacy schema: 100 proxies, 27 blocked,
   60 in use of which 16 are stuck (held by workers that have no task in processing: 15 of the
   crashed container 8b4f59aa, 1 of b77514be), 13 free.
2. `alembic upgrade head`, exactly as an operator runs it. It adopts the live tables, adds the
   lease and the lease API, and schedules the maintenance (requeue, sweep, cooldowns) with
   pg_cron. The operator then shortens orphan_grace to a few seconds so the demo does not wait
   minutes.
3. Nothing else: the demo only watches. pg_cron's next run frees the 16 stuck proxies, and the pool
   is back to the report's "after" figures (44 in use, 29 free).
4. A second crash, live, after the upgrade: container 93816237 dies. The fleet's heartbeat manager
   runs the UPDATE it already runs today to requeue the dead workers' tasks, and their 15 proxies
   are freed by a trigger in that same transaction: no sweep, no new code in the fleet.

The demo never calls a proxy-leases function. It doubles as a smoke check: it exits 1 when any
figure differs from the expected one, and 0 when all of them were observed.

Run it from the repository root with the project's interpreter:

    .venv/bin/python demo/replay_incident.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tools.throwaway_postgres import CRON_DATABASE, ThrowawayPostgres  # noqa: E402

FLEET_DATABASE = "fleet"
SWEEP_JOB_NAME = f"proxy_leases_sweep.{FLEET_DATABASE}"
SWEEP_COMMAND = "CALL public.run_lease_maintenance()"
DEMO_ORPHAN_GRACE = "5 seconds"
CRASHED_CONTAINER = "93816237"

WAIT_DEADLINE_SECONDS = 150
PROGRESS_EVERY_SECONDS = 10
SERVER_LOG_TAIL_LINES = 40

POOL_FIGURES_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE is_in_use),
       count(*) FILTER (WHERE is_blocked),
       count(*) FILTER (WHERE is_in_use IS NOT TRUE AND is_blocked IS NOT TRUE)
  FROM proxies
"""

# A held proxy p is stuck when its worker has no task in processing. Plain SQL on the fleet's own
# columns, so it reads the same before and after the upgrade.
STUCK_CONDITION = """
    NOT EXISTS (SELECT FROM catalog_tasks t WHERE t.worker_id = p.worker_id AND t.status = 'processing')
    AND NOT EXISTS (SELECT FROM object_tasks t WHERE t.worker_id = p.worker_id AND t.status = 'processing')
"""

STUCK_COUNT_SQL = f"SELECT count(*) FROM proxies p WHERE p.is_in_use AND {STUCK_CONDITION}"

# Worker ids are <container_id>_<n>.
CONTAINERS_SQL = f"""
WITH held AS (
    SELECT split_part(p.worker_id, '_', 1) AS container,
           count(*) AS proxies,
           count(*) FILTER (WHERE {STUCK_CONDITION}) AS stuck
      FROM proxies p
     WHERE p.is_in_use
     GROUP BY 1
), working AS (
    SELECT split_part(worker_id, '_', 1) AS container, count(*) AS tasks
      FROM (SELECT worker_id FROM catalog_tasks WHERE status = 'processing'
            UNION ALL
            SELECT worker_id FROM object_tasks WHERE status = 'processing') AS processing
     WHERE worker_id IS NOT NULL
     GROUP BY 1
)
SELECT container, coalesce(held.proxies, 0), coalesce(working.tasks, 0), coalesce(held.stuck, 0)
  FROM held FULL JOIN working USING (container)
 ORDER BY container
"""

HELD_BY_CONTAINER_SQL = "SELECT count(*) FROM proxies WHERE is_in_use AND starts_with(worker_id, %s)"

# Stand-ins for time passing: the live workers keep sending the heartbeat they send today, and the
# crashed container's workers have been silent for two minutes.
LIVE_WORKERS_HEARTBEAT_SQL = [
    "UPDATE catalog_tasks SET heartbeat_at = now() "
    "WHERE status = 'processing' AND worker_id IS NOT NULL AND NOT starts_with(worker_id, %(dead)s)",
    "UPDATE object_tasks SET heartbeat_at = now() "
    "WHERE status = 'processing' AND worker_id IS NOT NULL AND NOT starts_with(worker_id, %(dead)s)",
]
CRASHED_WORKERS_SILENT_SQL = [
    "UPDATE catalog_tasks SET heartbeat_at = now() - interval '2 minutes' "
    "WHERE status = 'processing' AND starts_with(worker_id, %(dead)s)",
    "UPDATE object_tasks SET heartbeat_at = now() - interval '2 minutes' "
    "WHERE status = 'processing' AND starts_with(worker_id, %(dead)s)",
]

# What the fleet's heartbeat_manager.py runs today: requeue the tasks of silent workers. It never
# touches proxies (that was the incident).
HEARTBEAT_MANAGER_SQL = {
    "catalog_tasks": "UPDATE catalog_tasks SET status = 'pending', worker_id = NULL "
                     "WHERE status = 'processing' AND heartbeat_at < now() - interval '1 minute'",
    "object_tasks": "UPDATE object_tasks SET status = 'pending', worker_id = NULL "
                    "WHERE status = 'processing' AND heartbeat_at < now() - interval '1 minute'",
}


@dataclass
class PoolStats:
    total: int
    in_use: int
    blocked: int
    free: int
    stuck: int
    containers: list[tuple[str, int, int, int]]  # container, proxies held, tasks processing, stuck


FIGURE_LABELS = {
    "total": "Total proxies",
    "in_use": "In use",
    "blocked": "Blocked",
    "free": "Free",
    "stuck": "Stuck",
}


class SweepRun(NamedTuple):
    """One row of cron.job_run_details."""

    runid: int
    start_time: datetime
    end_time: datetime | None
    status: str
    return_message: str | None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class Expectations:
    """Collects every figure the demo expected, and the ones that came out different."""

    def __init__(self) -> None:
        self.checked = 0
        self.differences: list[str] = []

    def expect(self, what: str, observed: object, expected: object) -> None:
        self.checked += 1
        if observed != expected:
            self.differences.append(f"{what}: expected {expected!r}, observed {observed!r}")
            print(f"  !! {what}: expected {expected!r}, observed {observed!r}")

    def expect_pool(self, stage: str, stats: PoolStats, **expected: int) -> None:
        for name, value in expected.items():
            self.expect(f"{stage}, {FIGURE_LABELS[name]}", getattr(stats, name), value)


# --- output helpers -------------------------------------------------------------------------------

def heading(text: str) -> None:
    print()
    print(f"=== {text} ".ljust(100, "="))


def utc_clock(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S")


def print_server_log_tail(pg: ThrowawayPostgres) -> None:
    lines = pg.server_log().splitlines()[-SERVER_LOG_TAIL_LINES:]
    print(f"--- last {len(lines)} lines of the server log ---")
    for line in lines:
        print(f"  {line}")


# --- the pool -------------------------------------------------------------------------------------

def read_pool_stats(fleet: psycopg.Connection) -> PoolStats:
    total, in_use, blocked, free = fleet.execute(POOL_FIGURES_SQL).fetchone()
    stuck = count_stuck(fleet)
    containers = fleet.execute(CONTAINERS_SQL).fetchall()
    return PoolStats(total, in_use, blocked, free, stuck, containers)


def count_stuck(fleet: psycopg.Connection) -> int:
    return fleet.execute(STUCK_COUNT_SQL).fetchone()[0]


def print_pool_stats(title: str, stats: PoolStats) -> None:
    print(f"Pool statistics, {title}:")
    print(f"  Total proxies:  {stats.total:4}")
    print(f"  In use:         {stats.in_use:4}")
    print(f"  Blocked:        {stats.blocked:4}")
    print(f"  Free:           {stats.free:4}   (not in use, not blocked)")
    print(f"  Stuck:          {stats.stuck:4}   (held, worker has no task in processing)")
    print("  Containers:               proxies held   tasks processing   stuck")
    for container, proxies, tasks, stuck in stats.containers:
        print(f"    - Container {container}:  {proxies:12}   {tasks:16}   {stuck:5}")


def count_held_by_container(conn: psycopg.Connection, container: str) -> int:
    return conn.execute(HELD_BY_CONTAINER_SQL, (container + "_",)).fetchone()[0]


# --- steps ----------------------------------------------------------------------------------------

def load_incident_state(pg: ThrowawayPostgres) -> None:
    with psycopg.connect(pg.url(CRON_DATABASE), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{FLEET_DATABASE}"')
    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet:
        for name in ("legacy_schema.sql", "incident_state.sql"):
            fleet.execute((REPO_ROOT / "demo" / name).read_text(encoding="utf-8"))
            print(f"loaded demo/{name}")


def run_alembic_upgrade(pg: ThrowawayPostgres) -> bool:
    env = dict(os.environ, DATABASE_URL=pg.url(FLEET_DATABASE))
    # The pg_cron defaults an operator gets, whatever the caller's shell says.
    env.pop("PROXY_LEASES_CRON", None)
    env.pop("PROXY_LEASES_CRON_SCHEDULE", None)
    print(f"$ DATABASE_URL={pg.url(FLEET_DATABASE)} python -m alembic upgrade head")
    result = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = (result.stdout + result.stderr).splitlines()
    if result.returncode != 0:
        for line in output:
            print(f"  | {line}")
        print(f"alembic exited with status {result.returncode}")
        return False
    for line in output:
        if "Context impl" in line or "Will assume transactional DDL" in line:
            continue
        # "INFO  [alembic.runtime.migration] Running upgrade ..." -> "Running upgrade ..."
        print(f"  | {line.split('] ', 1)[-1]}")
    return True


def shorten_orphan_grace(fleet: psycopg.Connection, expect: Expectations) -> None:
    before = fleet.execute("SELECT orphan_grace::text FROM proxy_lease_settings").fetchone()[0]
    fleet.execute("UPDATE proxy_lease_settings SET orphan_grace = %s", (DEMO_ORPHAN_GRACE,))
    after = fleet.execute("SELECT orphan_grace::text FROM proxy_lease_settings").fetchone()[0]
    print(f"Operator's setting: UPDATE proxy_lease_settings SET orphan_grace = '{DEMO_ORPHAN_GRACE}'")
    print(f"  orphan_grace: {before} -> {after}   (default 1 minute: how long a worker may hold a proxy")
    print("  without a task in processing; shortened here only so the demo does not wait minutes)")
    expect.expect("orphan_grace installed by the upgrade", before, "00:01:00")


def show_sweep_job(cron: psycopg.Connection, expect: Expectations) -> int | None:
    row = cron.execute(
        "SELECT jobid, jobname, schedule, database, command FROM cron.job WHERE jobname = %s",
        (SWEEP_JOB_NAME,),
    ).fetchone()
    if row is None:
        expect.expect(f"pg_cron job {SWEEP_JOB_NAME} in database {CRON_DATABASE}", "missing", "present")
        return None
    jobid, jobname, schedule, database, command = row
    print(f"pg_cron job (cron.job in database {CRON_DATABASE}):")
    print(f"  jobid {jobid}  jobname {jobname}  schedule '{schedule}'  database {database}")
    print(f"  command: {command}")
    expect.expect("pg_cron job schedule", schedule, "* * * * *")
    expect.expect("pg_cron job database", database, FLEET_DATABASE)
    expect.expect("pg_cron job command", command, SWEEP_COMMAND)
    return jobid


def sweep_runs(cron: psycopg.Connection, jobid: int) -> list[SweepRun]:
    rows = cron.execute(
        "SELECT runid, start_time, end_time, status, return_message FROM cron.job_run_details "
        "WHERE jobid = %s ORDER BY runid",
        (jobid,),
    ).fetchall()
    return [SweepRun(*row) for row in rows]


def next_minute_utc() -> str:
    now = datetime.now(timezone.utc)
    return (now.replace(second=0, microsecond=0) + timedelta(minutes=1)).strftime("%H:%M:00")


def wait_for_the_sweep(pg: ThrowawayPostgres, fleet: psycopg.Connection, cron: psycopg.Connection,
                       jobid: int) -> bool:
    """Only watch: poll until pg_cron's sweep has freed every stuck proxy and its run is logged."""
    started = time.monotonic()
    last_progress = None
    reported_runs: set[int] = set()
    stuck_before = count_stuck(fleet)
    while True:
        # Runs first: a run logged as finished has committed its sweep, so the count below shows it.
        runs = sweep_runs(cron, jobid)
        stuck = count_stuck(fleet)
        for run in runs:
            if run.runid in reported_runs or not run.finished:
                continue
            reported_runs.add(run.runid)
            note = "   (nothing orphaned for longer than the grace yet)" if stuck == stuck_before else ""
            print(f"  {utc_clock(run.start_time)} UTC  pg_cron ran the sweep: {run.status} "
                  f"({run.return_message}); stuck proxies {stuck_before} -> {stuck}{note}")
            stuck_before = stuck
            if run.status == "failed":
                print_server_log_tail(pg)
                return False
        run_in_progress = any(not run.finished for run in runs)
        if stuck == 0 and not run_in_progress:
            print(f"  no proxy is stuck any more (waited {time.monotonic() - started:.0f} s)")
            return True

        elapsed = time.monotonic() - started
        if elapsed > WAIT_DEADLINE_SECONDS:
            print(f"  gave up after {WAIT_DEADLINE_SECONDS} s: {stuck} proxies still stuck")
            print_server_log_tail(pg)
            return False
        if last_progress is None or elapsed - last_progress >= PROGRESS_EVERY_SECONDS:
            print(f"  waiting for pg_cron's next run at {next_minute_utc()} UTC "
                  f"({stuck} stuck, {elapsed:.0f} s so far)")
            last_progress = elapsed
        time.sleep(1)


def print_sweep_runs(cron: psycopg.Connection, jobid: int, expect: Expectations) -> None:
    runs = sweep_runs(cron, jobid)
    print(f"cron.job_run_details for job {jobid}:")
    print("  start (UTC)  duration  status     return_message")
    for run in runs:
        milliseconds = (run.end_time - run.start_time).total_seconds() * 1000 if run.end_time else float("nan")
        print(f"  {utc_clock(run.start_time)}     {milliseconds:5.0f} ms  {run.status:9}  {run.return_message}")
    succeeded = [run for run in runs if run.status == "succeeded" and run.return_message == "1 row"]
    expect.expect("a logged sweep run that succeeded with '1 row'", bool(succeeded), True)


def replay_live_crash(fleet: psycopg.Connection, observer: psycopg.Connection, expect: Expectations) -> None:
    dead_prefix = CRASHED_CONTAINER + "_"
    print(f"Container {CRASHED_CONTAINER} dies: its 15 workers stop in the middle of their tasks.")
    print("Time passes (simulated): the live workers keep sending their heartbeats, and")
    print(f"{CRASHED_CONTAINER}'s last heartbeats are now 2 minutes old.")
    for statement in LIVE_WORKERS_HEARTBEAT_SQL + CRASHED_WORKERS_SILENT_SQL:
        fleet.execute(statement, {"dead": dead_prefix})
    held = count_held_by_container(fleet, CRASHED_CONTAINER)
    print(f"  proxies held by {CRASHED_CONTAINER}'s workers: {held}")
    expect.expect(f"proxies held by {CRASHED_CONTAINER} before the heartbeat manager runs", held, 15)

    print()
    print("The heartbeat manager's existing check, unchanged, in one transaction. Apart from standing in")
    print("for the clock and the workers' heartbeats above, this UPDATE (one per task table) is the only SQL")
    print("the demo runs here, and it says nothing about proxies:")
    with fleet.transaction():
        for table, statement in HEARTBEAT_MANAGER_SQL.items():
            requeued = fleet.execute(statement).rowcount
            print(f"  {statement}")
            if table == "object_tasks":
                print(f"    -> {requeued} task(s) back to pending: {CRASHED_CONTAINER}'s")
                expect.expect("object_tasks requeued by the heartbeat manager", requeued, 15)
            else:
                print(f"    -> {requeued} task(s) back to pending: the incident's task left in processing "
                      "with no worker was")
                print("       already requeued by pg_cron's run of requeue_stale_tasks(), its heartbeat being 2 hours old")
                expect.expect("catalog_tasks requeued by the heartbeat manager", requeued, 0)
        inside = count_held_by_container(fleet, CRASHED_CONTAINER)
        elsewhere = count_held_by_container(observer, CRASHED_CONTAINER)
        print(f"  before COMMIT, inside the transaction: {inside} proxies held by {CRASHED_CONTAINER}'s workers")
        print(f"  before COMMIT, seen from another session: {elsewhere} (the release commits with the requeue)")
    after = count_held_by_container(observer, CRASHED_CONTAINER)
    print(f"  after COMMIT: {after}. The release trigger freed them in the heartbeat manager's own transaction.")
    expect.expect(f"proxies held by {CRASHED_CONTAINER}, inside the requeue transaction", inside, 0)
    expect.expect(f"proxies held by {CRASHED_CONTAINER}, other session before COMMIT", elsewhere, 15)
    expect.expect(f"proxies held by {CRASHED_CONTAINER}, after COMMIT", after, 0)


# --- the demo -------------------------------------------------------------------------------------

def replay(pg: ThrowawayPostgres, expect: Expectations) -> bool:
    heading("1. The incident (2025-12-10), on the fleet's legacy schema")
    load_incident_state(pg)
    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet:
        stats = read_pool_stats(fleet)
        print_pool_stats("as the incident report found it", stats)
        expect.expect_pool("incident", stats, total=100, in_use=60, blocked=27, free=13, stuck=16)

    heading("2. The upgrade: alembic upgrade head")
    if not run_alembic_upgrade(pg):
        expect.expect("alembic upgrade head", "failed", "succeeded")
        return False

    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet, \
            psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as observer, \
            psycopg.connect(pg.url(CRON_DATABASE), autocommit=True) as cron:
        print()
        shorten_orphan_grace(fleet, expect)
        print()
        jobid = show_sweep_job(cron, expect)
        if jobid is None:
            return False

        heading("3. Nobody does anything: the database frees the stuck proxies by itself")
        print("The demo calls no proxy-leases function; it only reads the pool until pg_cron's sweep has run.")
        print("(pg_cron 1.4 runs at minute boundaries; a run within 5 s of the upgrade frees nothing yet.)")
        if not wait_for_the_sweep(pg, fleet, cron, jobid):
            expect.expect("stuck proxies freed by pg_cron in time", False, True)
            return False
        print()
        stats = read_pool_stats(fleet)
        print_pool_stats("after pg_cron's sweep", stats)
        expect.expect_pool("after the sweep", stats, total=100, in_use=44, blocked=27, free=29, stuck=0)
        print()
        print_sweep_runs(cron, jobid, expect)

        heading(f"4. A new crash after the upgrade: container {CRASHED_CONTAINER}")
        replay_live_crash(fleet, observer, expect)
        print()
        stats = read_pool_stats(fleet)
        print_pool_stats(f"after {CRASHED_CONTAINER}'s tasks were requeued", stats)
        expect.expect_pool("after the second crash", stats, total=100, in_use=29, blocked=27, free=44, stuck=0)
    return True


def main() -> int:
    started = time.monotonic()
    expect = Expectations()
    print("Starting a throwaway PostgreSQL with pg_cron preloaded...")
    with ThrowawayPostgres() as pg:
        completed = replay(pg, expect)

    heading("Result")
    elapsed = time.monotonic() - started
    if completed and not expect.differences:
        print(f"OK: all {expect.checked} expected figures observed ({elapsed:.1f} s).")
        return 0
    print(f"FAILED after {elapsed:.1f} s: {len(expect.differences)} of {expect.checked} checked figures differ"
          + ("" if completed else ", and the demo stopped early") + ":")
    for difference in expect.differences:
        print(f"  - {difference}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
