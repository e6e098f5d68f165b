"""Replay the 2025-12-10 proxy incident on a throwaway server, and watch the database fix it by itself.

What it shows, in order:

1. The pool as the incident report found it, on the fleet's legacy schema: 100 proxies, 27 blocked,
   60 in use of which 16 are stuck (held by workers that have no task in processing: 15 of the
   crashed container 8b4f59aa, 1 of b77514be), 13 free.
2. `alembic upgrade head`, exactly as an operator runs it. It adopts the live tables, adds the
   lease and the lease API, the status views and the audit trail, and schedules the maintenance
   (requeue, sweep, cooldowns) with pg_cron. The operator then shortens orphan_grace to a few
   seconds so the demo does not wait minutes, and looks at the pool the way the report did, but
   with one query: proxy_pool_status and proxy_pool_by_container, printed in the shape of the
   report's statistics block.
3. Nothing else: the demo only watches. pg_cron's next run frees the 16 stuck proxies, and the views
   show the report's "after" figures (44 in use, 29 free). The audit trail (proxy_lease_events) says
   which proxies were freed, whose they were and why, proxy_recovery_by_hour says how long the pool
   went without them, and the server log has the sweep's LOG line naming the containers.
4. A second crash, live, after the upgrade: container 93816237 dies. The fleet's heartbeat manager
   runs the UPDATE it already runs today to requeue the dead workers' tasks, and their 15 proxies
   are freed by a trigger in that same transaction: no sweep, no new code in the fleet. The audit
   trail records them as requeued.
5. What an operator sees: `proxy-leases check` (every health check passes: the maintenance ran, and
   left its trace in the fleet's database), and `proxy-leases plot`, the pool since the upgrade drawn
   from the audit trail into demo/out/pool.png, the 31 reclaims marked.

The demo never calls a proxy-leases function. It doubles as a smoke check: it exits 1 when any
figure differs from the expected one, and 0 when all of them were observed.

Run it from the repository root with the project's interpreter:

    .venv/bin/python demo/replay_incident.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import psycopg
from psycopg.rows import dict_row

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from proxy_leases.migrations.pg_cron import MAINTENANCE_COMMAND, job_name  # noqa: E402
from tools.harness import CRON_DATABASE, ThrowawayPostgres, alembic_cli, proxy_leases_cli  # noqa: E402

FLEET_DATABASE = "fleet"
# Where step 5 draws the pool (gitignored; docs/monitoring.md shows one such drawing).
PLOT = REPO_ROOT / "demo" / "out" / "pool.png"
MAINTENANCE_JOB_NAME = job_name(FLEET_DATABASE)
DEMO_ORPHAN_GRACE = "5 seconds"
INCIDENT_CONTAINER = "8b4f59aa"
CRASHED_CONTAINER = "93816237"

WAIT_DEADLINE_SECONDS = 150
PROGRESS_EVERY_SECONDS = 10
SERVER_LOG_TAIL_LINES = 40
LOG_LINE_DEADLINE_SECONDS = 10

# The incident's containers, as (container, proxies held, tasks processing, proxies stuck): see
# demo/incident_state.sql. b77514be_16 finished its task but kept its proxy.
CONTAINERS_IN_THE_INCIDENT = [
    (INCIDENT_CONTAINER, 15, 0, 15),
    ("93816237", 15, 15, 0),
    ("b77514be", 16, 15, 1),
    ("e1bf8c63", 14, 14, 0),
]
CONTAINERS_AFTER_THE_SWEEP = [
    ("93816237", 15, 15, 0),
    ("b77514be", 15, 15, 0),
    ("e1bf8c63", 14, 14, 0),
]
CONTAINERS_AFTER_THE_SECOND_CRASH = [
    ("b77514be", 15, 15, 0),
    ("e1bf8c63", 14, 14, 0),
]

# All 16 stuck proxies are orphans (their leases, given by the upgrade, have minutes left) and their
# grace ends at the same moment (the upgrade granted them in one statement), so one sweep frees them
# all and writes exactly this line.
EXPECTED_SWEEP_LOG_MESSAGE = ("release_stuck_proxies: freed 16 stuck proxies (orphaned 16) held by "
                              f"2 container(s): {INCIDENT_CONTAINER} (15), b77514be (1)")
SWEEP_LOG_PREFIXES = ("release_stuck_proxies: ", "run_lease_maintenance: ")

# --- before the upgrade: the figures written out by hand ------------------------------------------
# The legacy schema has no status views, so stage 1 counts the pool itself: proxy_pool_status's split
# (in use; blocked and not held; neither) on the fleet's own columns, and the report's meaning of
# stuck. The views must agree with these counts once the upgrade has installed them.

LEGACY_POOL_FIGURES_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE is_in_use IS TRUE),
       count(*) FILTER (WHERE is_in_use IS NOT TRUE AND is_blocked IS TRUE),
       count(*) FILTER (WHERE is_in_use IS NOT TRUE AND is_blocked IS NOT TRUE)
  FROM proxies
"""

# A held proxy p is stuck when its worker has no task in processing.
LEGACY_STUCK_CONDITION = """
    NOT EXISTS (SELECT FROM catalog_tasks t WHERE t.worker_id = p.worker_id AND t.status = 'processing')
    AND NOT EXISTS (SELECT FROM object_tasks t WHERE t.worker_id = p.worker_id AND t.status = 'processing')
"""

LEGACY_STUCK_COUNT_SQL = f"SELECT count(*) FROM proxies p WHERE p.is_in_use AND {LEGACY_STUCK_CONDITION}"

# Worker ids are <container_id>_<n>.
LEGACY_CONTAINERS_SQL = f"""
WITH held AS (
    SELECT split_part(p.worker_id, '_', 1) AS container,
           count(*) AS proxies,
           count(*) FILTER (WHERE {LEGACY_STUCK_CONDITION}) AS stuck
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

# --- after the upgrade: what proxy-leases gives to read -------------------------------------------
# The queries an operator runs; the demo reads their columns by name.

POOL_STATUS_SQL = "SELECT * FROM proxy_pool_status"
POOL_BY_CONTAINER_SQL = "SELECT * FROM proxy_pool_by_container ORDER BY container_id"

# The exact rows the next sweep frees, and why: what the audit trail must show for them afterwards.
STUCK_PROXIES_SQL = "SELECT id, worker_id, reason FROM stuck_proxies ORDER BY id"

LAST_EVENT_ID_SQL = "SELECT coalesce(max(id), 0) FROM proxy_lease_events"

RELEASED_SINCE_SQL = """
SELECT occurred_at, proxy_id, worker_id, reason, leased_at, renewed_at, occurred_at - renewed_at
  FROM proxy_lease_events
 WHERE id > %s AND event = 'released'
 ORDER BY proxy_id
"""

EVENTS_BY_REASON_SQL = """
SELECT event, reason, count(*)
  FROM proxy_lease_events
 GROUP BY event, reason
 ORDER BY event, reason
"""

CONTAINER_RELEASES_SQL = """
SELECT reason, db_user, count(*), min(proxy_id), max(proxy_id)
  FROM proxy_lease_events
 WHERE event = 'released' AND split_part(worker_id, '_', 1) = %s
 GROUP BY reason, db_user
 ORDER BY reason, db_user
"""

RECOVERY_BY_HOUR_SQL = "SELECT * FROM proxy_recovery_by_hour ORDER BY hour"

# How long ago the upgrade granted the leases of the proxies held then, and how long until those
# leases are older than the demo's orphan_grace (all were granted by one statement, at one instant).
UPGRADE_LEASES_AGE_SQL = """
SELECT extract(epoch FROM now() - max(leased_at)),
       greatest(0, extract(epoch FROM max(leased_at) + %s::interval - now()))
  FROM proxies
 WHERE is_in_use
"""
# now() is a transaction's start: wait this much longer than the database says, so that the next
# transaction surely starts past the grace.
GRACE_MARGIN_SECONDS = 0.2

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


class ContainerFigures(NamedTuple):
    """One line of the report's container list; compares equal to a plain tuple of the same figures."""

    container: str | None
    proxies_held: int
    tasks_processing: int
    proxies_stuck: int


@dataclass
class PoolStats:
    total: int
    in_use: int
    blocked: int
    free: int
    stuck: int
    containers: list[ContainerFigures]
    # From proxy_pool_by_container.latest_renewal; the legacy schema has no such thing.
    last_sign_of_life: dict[str | None, datetime] = field(default_factory=dict)

    @property
    def active_containers(self) -> int:
        """The report's "active containers": those with a task in processing."""
        return sum(1 for figures in self.containers if figures.tasks_processing > 0)

    def figures(self) -> tuple:
        return (self.total, self.in_use, self.blocked, self.free, self.stuck, self.containers)


class PoolSource(NamedTuple):
    """Where a statistics block was read from, and what its "stuck" means there."""

    read_from: str
    stuck_means: str


LEGACY_COUNTS = PoolSource("counted by hand on the legacy columns: the status views come with the upgrade",
                           "held, and the worker has no task in processing")
STATUS_VIEWS = PoolSource(f"{POOL_STATUS_SQL}; {POOL_BY_CONTAINER_SQL}",
                          "held, and the next sweep frees them")


class BeforeTheSweep(NamedTuple):
    """The pool as the operator saw it, in the transaction that shortened the grace."""

    stats: PoolStats
    stuck_proxies: list[tuple[int, str, str]]  # id, worker_id, reason
    last_event_id: int


FIGURE_LABELS = {
    "total": "Total proxies",
    "in_use": "In use",
    "blocked": "Blocked",
    "free": "Free",
    "stuck": "Stuck",
    "active_containers": "active containers",
    "containers": "containers (proxies held, tasks processing, stuck)",
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

    def expect_pool(self, stage: str, stats: PoolStats, **expected: object) -> None:
        for name, value in expected.items():
            self.expect(f"{stage}, {FIGURE_LABELS[name]}", getattr(stats, name), value)


# --- output helpers -------------------------------------------------------------------------------

def heading(text: str) -> None:
    print()
    print(f"=== {text} ".ljust(100, "="))


def utc_clock(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S")


def utc_clock_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def print_server_log_tail(pg: ThrowawayPostgres) -> None:
    lines = pg.server_log().splitlines()[-SERVER_LOG_TAIL_LINES:]
    print(f"--- last {len(lines)} lines of the server log ---")
    for line in lines:
        print(f"  {line}")


# --- the pool -------------------------------------------------------------------------------------

def read_legacy_pool_stats(fleet: psycopg.Connection) -> PoolStats:
    total, in_use, blocked, free = fleet.execute(LEGACY_POOL_FIGURES_SQL).fetchone()
    stuck = fleet.execute(LEGACY_STUCK_COUNT_SQL).fetchone()[0]
    containers = [ContainerFigures(*row) for row in fleet.execute(LEGACY_CONTAINERS_SQL)]
    return PoolStats(total, in_use, blocked, free, stuck, containers)


def read_pool_status(conn: psycopg.Connection) -> PoolStats:
    """The report's statistics block, from the two views, as any session (or transaction) sees them."""
    with conn.cursor(row_factory=dict_row) as cursor:
        status = cursor.execute(POOL_STATUS_SQL).fetchone()
        by_container = cursor.execute(POOL_BY_CONTAINER_SQL).fetchall()
    containers = [ContainerFigures(row["container_id"], row["proxies_held"], row["tasks_processing"],
                                   row["proxies_stuck"]) for row in by_container]
    last_sign_of_life = {row["container_id"]: row["latest_renewal"] for row in by_container
                         if row["latest_renewal"] is not None}
    return PoolStats(status["total"], status["in_use"], status["blocked"], status["free"], status["stuck"],
                     containers, last_sign_of_life)


def count_stuck(fleet: psycopg.Connection) -> int:
    """Stuck by the sweeper's own rule: what its next run frees."""
    return fleet.execute("SELECT stuck FROM proxy_pool_status").fetchone()[0]


def count_held_by_container(conn: psycopg.Connection, container: str) -> int:
    row = conn.execute("SELECT proxies_held FROM proxy_pool_by_container WHERE container_id = %s",
                       (container,)).fetchone()
    return 0 if row is None else row[0]


def print_pool_stats(title: str, stats: PoolStats, source: PoolSource) -> None:
    """In the shape of the incident report's statistics block, with what it had to investigate added."""
    active = [figures for figures in stats.containers if figures.tasks_processing > 0]
    idle = [figures for figures in stats.containers if figures.tasks_processing == 0]
    print(f"Pool statistics, {title}")
    print(f"({source.read_from}):")
    print()
    print(f"  Total proxies:      {stats.total}")
    print(f"  In use:             {stats.in_use:<3} ({stats.active_containers} active containers)")
    print(f"  Blocked:            {stats.blocked}")
    print(f"  Free:               {stats.free}")
    print(f"  Stuck:              {stats.stuck:<3} ({source.stuck_means})")
    print()
    print("  Active containers:")
    for figures in active:
        print(f"    - Container {figures.container}: {figures.tasks_processing} tasks, "
              f"{figures.proxies_held} proxies held, {figures.proxies_stuck} stuck")
    if idle:
        # The report needed an investigation to find these: proxies held, and nothing being worked on.
        print("  Containers holding proxies with no task in processing:")
        for figures in idle:
            seen = stats.last_sign_of_life.get(figures.container)
            last_seen = f", last sign of life {utc_clock(seen)} UTC" if seen else ""
            print(f"    - Container {figures.container or '(no worker)'}: {figures.proxies_held} proxies held, "
                  f"{figures.proxies_stuck} stuck{last_seen}")


# --- the audit trail and the server log -----------------------------------------------------------

def print_released_events(fleet: psycopg.Connection, since_event_id: int) -> list[tuple[int, str, str]]:
    """The released events appended after since_event_id; returns (proxy, worker, reason) of each."""
    rows = fleet.execute(RELEASED_SINCE_SQL, (since_event_id,)).fetchall()
    print(f"proxy_lease_events: the {len(rows)} released events appended since the pool was read before the sweep")
    print("  freed at (UTC)  proxy  worker       reason     held since  last sign of life  held after it")
    for occurred_at, proxy_id, worker_id, reason, leased_at, renewed_at, held_after in rows:
        print(f"  {utc_clock_ms(occurred_at)}    {proxy_id:5}  {worker_id:11}  {reason:9}  "
              f"{utc_clock(leased_at)}    {utc_clock(renewed_at)}           {held_after.total_seconds():5.1f} s")
    # The trail starts with the upgrade: the dead workers' real grants, an hour before, predate it.
    print("  (held since, last sign of life: the lease the upgrade gave the proxies it found held; what")
    print("  happened before the upgrade is not in the trail, so 'held after it' counts from the upgrade)")
    return [(proxy_id, worker_id, reason) for _, proxy_id, worker_id, reason, *_ in rows]


def print_events_by_reason(fleet: psycopg.Connection) -> list[tuple[str, str, int]]:
    rows = fleet.execute(EVENTS_BY_REASON_SQL).fetchall()
    print("proxy_lease_events by event and reason, since the upgrade:")
    for event, reason, count in rows:
        print(f"  {event:9}  {reason:15}  {count:3}")
    return rows


def print_recovery_by_hour(fleet: psycopg.Connection) -> int:
    """Prints proxy_recovery_by_hour and returns the proxies reclaimed from dead workers, all hours together."""
    with fleet.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(RECOVERY_BY_HOUR_SQL).fetchall()
    print(f"{RECOVERY_BY_HOUR_SQL}:")
    print("  hour (UTC)  reclaimed  p50 s  p95 s  max s  lost proxy-seconds  freed after lease end")
    for row in rows:
        print(f"  {row['hour'].astimezone(timezone.utc):%H:%M}       {row['reclaimed']:9}  "
              f"{row['p50_seconds']:5}  {row['p95_seconds']:5}  {row['max_seconds']:5}  "
              f"{row['lost_proxy_seconds']:18}  {row['freed_after_lease_end']:21}")
    return sum(row["reclaimed"] for row in rows)


def sweep_log_messages(pg: ThrowawayPostgres) -> list[tuple[str, str]]:
    """(line, message) of every LOG line the sweeps and maintenance runs wrote, oldest first."""
    found = []
    for line in pg.server_log().splitlines():
        _, marker, message = line.partition("LOG:  ")
        if marker and message.startswith(SWEEP_LOG_PREFIXES):
            found.append((line, message))
    return found


def show_sweep_log_lines(pg: ThrowawayPostgres, expect: Expectations) -> None:
    # The backend writes its LOG line before the run is recorded as finished; the wait only covers
    # a slow write to the log file.
    deadline = time.monotonic() + LOG_LINE_DEADLINE_SECONDS
    while True:
        found = sweep_log_messages(pg)
        sweeps = [message for _, message in found if message.startswith("release_stuck_proxies: ")]
        if sweeps or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print("The server log (cron.job_run_details shows only the CALL):")
    for line, _ in found:
        print(f"  {line}")
    expect.expect("release_stuck_proxies LOG lines", sweeps, [EXPECTED_SWEEP_LOG_MESSAGE])
    maintenance = [message for _, message in found
                   if message.startswith("run_lease_maintenance: ") and ", freed 16 stuck proxies, " in message]
    expect.expect("a run_lease_maintenance LOG line saying 'freed 16 stuck proxies'", len(maintenance), 1)


# --- steps ----------------------------------------------------------------------------------------

def load_incident_state(pg: ThrowawayPostgres) -> None:
    with psycopg.connect(pg.url(CRON_DATABASE), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{FLEET_DATABASE}"')
    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet:
        for name in ("legacy_schema.sql", "incident_state.sql"):
            fleet.execute((REPO_ROOT / "demo" / name).read_text(encoding="utf-8"))
            print(f"loaded demo/{name}")


def run_alembic_upgrade(pg: ThrowawayPostgres) -> bool:
    print(f"$ DATABASE_URL={pg.url(FLEET_DATABASE)} python -m alembic upgrade head")
    # The options an operator gets by default, whatever the caller's shell says (no PROXY_LEASES_*).
    result = alembic_cli("upgrade", "head", env={"DATABASE_URL": pg.url(FLEET_DATABASE)})
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


def wait_until_the_upgrades_leases_pass_the_grace(fleet: psycopg.Connection) -> None:
    """Within its grace a proxy with no task is not stuck yet (its worker may be about to take one).

    The demo looks at the pool once the grace has passed for the leases the upgrade gave, so that
    the views show what the sweep is going to free: a few seconds at most.
    """
    age, remaining = fleet.execute(UPGRADE_LEASES_AGE_SQL, (DEMO_ORPHAN_GRACE,)).fetchone()
    print(f"The upgrade gave the proxies held today a lease {float(age):.1f} s ago; the demo lets "
          f"{float(remaining):.1f} s more pass,")
    print(f"until those leases are older than the {DEMO_ORPHAN_GRACE} of grace the operator is about to set.")
    time.sleep(float(remaining) + GRACE_MARGIN_SECONDS)


def shorten_orphan_grace_and_read_the_pool(fleet: psycopg.Connection, expect: Expectations) -> BeforeTheSweep:
    # One transaction: until it commits, every sweep still uses the default grace of a minute and
    # frees nothing, so what it reads is exactly what the next sweep acts on, whenever pg_cron's
    # minute comes, and the demo never races the job.
    with fleet.transaction():
        before = fleet.execute("SELECT orphan_grace::text FROM proxy_lease_settings").fetchone()[0]
        fleet.execute("UPDATE proxy_lease_settings SET orphan_grace = %s", (DEMO_ORPHAN_GRACE,))
        after = fleet.execute("SELECT orphan_grace::text FROM proxy_lease_settings").fetchone()[0]
        stats = read_pool_status(fleet)
        stuck_proxies = fleet.execute(STUCK_PROXIES_SQL).fetchall()
        last_event_id = fleet.execute(LAST_EVENT_ID_SQL).fetchone()[0]
    print(f"Operator's setting: UPDATE proxy_lease_settings SET orphan_grace = '{DEMO_ORPHAN_GRACE}'")
    print(f"  orphan_grace: {before} -> {after}   (default 1 minute: how long a worker may hold a proxy")
    print("  without a task in processing; shortened here only so the demo does not wait minutes)")
    expect.expect("orphan_grace installed by the upgrade", before, "00:01:00")
    return BeforeTheSweep(stats, stuck_proxies, last_event_id)


def show_sweep_job(cron: psycopg.Connection, expect: Expectations) -> int | None:
    row = cron.execute(
        "SELECT jobid, jobname, schedule, database, command FROM cron.job WHERE jobname = %s",
        (MAINTENANCE_JOB_NAME,),
    ).fetchone()
    if row is None:
        expect.expect(f"pg_cron job {MAINTENANCE_JOB_NAME} in database {CRON_DATABASE}", "missing", "present")
        return None
    jobid, jobname, schedule, database, command = row
    print(f"pg_cron job (cron.job in database {CRON_DATABASE}):")
    print(f"  jobid {jobid}  jobname {jobname}  schedule '{schedule}'  database {database}")
    print(f"  command: {command}")
    expect.expect("pg_cron job schedule", schedule, "* * * * *")
    expect.expect("pg_cron job database", database, FLEET_DATABASE)
    expect.expect("pg_cron job command", command, MAINTENANCE_COMMAND)
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


def show_crash_releases(fleet: psycopg.Connection, expect: Expectations) -> None:
    rows = fleet.execute(CONTAINER_RELEASES_SQL, (CRASHED_CONTAINER,)).fetchall()
    print(f"proxy_lease_events: the released events of {CRASHED_CONTAINER}'s proxies")
    for reason, db_user, count, first_proxy, last_proxy in rows:
        print(f"  released  {reason}  {count} proxies ({first_proxy} to {last_proxy}), database user {db_user}")
    # The reason is the release trigger's: it freed each proxy because its task went back to pending.
    print("  (requeued: their tasks went back to pending, by the heartbeat manager's own UPDATE)")
    expect.expect(f"released events of {CRASHED_CONTAINER}'s proxies, by reason",
                  [(reason, count) for reason, _, count, _, _ in rows], [("requeued", 15)])


# --- the demo -------------------------------------------------------------------------------------

def replay(pg: ThrowawayPostgres, expect: Expectations) -> bool:
    heading("1. The incident (2025-12-10), on the fleet's legacy schema")
    load_incident_state(pg)
    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet:
        incident_stats = read_legacy_pool_stats(fleet)
        print_pool_stats("as the incident report found it", incident_stats, LEGACY_COUNTS)
        expect.expect_pool("incident", incident_stats, total=100, in_use=60, blocked=27, free=13, stuck=16,
                           active_containers=3, containers=CONTAINERS_IN_THE_INCIDENT)

    heading("2. The upgrade: alembic upgrade head")
    upgrade_started = time.monotonic()
    if not run_alembic_upgrade(pg):
        expect.expect("alembic upgrade head", "failed", "succeeded")
        return False

    with psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as fleet, \
            psycopg.connect(pg.url(FLEET_DATABASE), autocommit=True) as observer, \
            psycopg.connect(pg.url(CRON_DATABASE), autocommit=True) as cron:
        print()
        jobid = show_sweep_job(cron, expect)
        if jobid is None:
            return False
        print()
        wait_until_the_upgrades_leases_pass_the_grace(fleet)
        before_the_sweep = shorten_orphan_grace_and_read_the_pool(fleet, expect)
        stats = before_the_sweep.stats
        print()
        print_pool_stats("after the upgrade, before the sweep, read in the operator's transaction", stats,
                         STATUS_VIEWS)
        print(f"  ({INCIDENT_CONTAINER}'s last sign of life is the lease the upgrade gave the proxies it found held:")
        print("  its workers died an hour earlier, before there was a lease to renew.)")
        expect.expect_pool("before the sweep", stats, total=100, in_use=60, blocked=27, free=13, stuck=16,
                           active_containers=3, containers=CONTAINERS_IN_THE_INCIDENT)
        expect.expect("before the sweep, the views agree with the hand-written count of stage 1",
                      stats.figures(), incident_stats.figures())

        heading("3. Nobody does anything: the database frees the stuck proxies by itself")
        print("The demo calls no proxy-leases function; it only reads the pool until pg_cron's sweep has run.")
        print("(pg_cron 1.4 runs at minute boundaries; a run before the operator's setting committed used the")
        print("default grace of a minute, and freed nothing yet.)")
        if not wait_for_the_sweep(pg, fleet, cron, jobid):
            expect.expect("stuck proxies freed by pg_cron in time", False, True)
            return False
        print()
        stats = read_pool_status(fleet)
        print_pool_stats("after pg_cron's sweep", stats, STATUS_VIEWS)
        expect.expect_pool("after the sweep", stats, total=100, in_use=44, blocked=27, free=29, stuck=0,
                           active_containers=3, containers=CONTAINERS_AFTER_THE_SWEEP)

        print()
        print("What changed, and why: the audit trail, written by a trigger on proxies in the sweep's own")
        print("transaction.")
        released = print_released_events(fleet, before_the_sweep.last_event_id)
        expect.expect("released events of the sweep: exactly the rows stuck_proxies listed before it",
                      released, before_the_sweep.stuck_proxies)
        expect.expect("released events of the sweep, by container",
                      dict(Counter(worker.split("_", 1)[0] for _, worker, _ in released)),
                      {INCIDENT_CONTAINER: 15, "b77514be": 1})
        print()
        expect.expect("proxy_lease_events by event and reason after the sweep", print_events_by_reason(fleet),
                      [("released", "orphaned", 16)])
        print()
        # The seconds depend on when pg_cron's minute came; only the count is certain.
        expect.expect("proxies reclaimed from dead workers (proxy_recovery_by_hour) after the sweep",
                      print_recovery_by_hour(fleet), 16)
        print()
        show_sweep_log_lines(pg, expect)
        print()
        print_sweep_runs(cron, jobid, expect)

        heading(f"4. A new crash after the upgrade: container {CRASHED_CONTAINER}")
        replay_live_crash(fleet, observer, expect)
        print()
        stats = read_pool_status(fleet)
        print_pool_stats(f"after {CRASHED_CONTAINER}'s tasks were requeued", stats, STATUS_VIEWS)
        expect.expect_pool("after the second crash", stats, total=100, in_use=29, blocked=27, free=44, stuck=0,
                           active_containers=2, containers=CONTAINERS_AFTER_THE_SECOND_CRASH)
        print()
        show_crash_releases(fleet, expect)
        print()
        expect.expect("proxy_lease_events by event and reason at the end", print_events_by_reason(fleet),
                      [("released", "orphaned", 16), ("released", "requeued", 15)])
        print()
        expect.expect("proxies reclaimed from dead workers (proxy_recovery_by_hour) at the end",
                      print_recovery_by_hour(fleet), 31)

    heading("5. What an operator sees: proxy-leases check and proxy-leases plot")
    url = pg.url(FLEET_DATABASE)
    print(f"$ proxy-leases check --url {url}")
    checked = proxy_leases_cli("check", "--url", url)
    print(checked.stdout + checked.stderr, end="")
    expect.expect("proxy-leases check: every health check passes (exit 0)", checked.returncode, 0)
    PLOT.parent.mkdir(exist_ok=True)
    since_the_upgrade = (time.monotonic() - upgrade_started + 5) / 3600
    print(f"\n$ proxy-leases plot --url {url} --hours {since_the_upgrade:.4f} --output {PLOT.relative_to(REPO_ROOT)}")
    drawn = proxy_leases_cli("plot", "--url", url, "--hours", f"{since_the_upgrade:.4f}", "--output", str(PLOT))
    print(drawn.stdout + drawn.stderr, end="")
    expect.expect("proxy-leases plot: the pool since the upgrade, the reclaims marked",
                  (drawn.returncode, drawn.stdout.split("; now ")[-1].strip()),
                  (0, "29 held, 27 blocked, 44 free of 100"))
    expect.expect("proxy-leases plot: reclaims marked", " 31 reclaims;" in drawn.stdout, True)
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
