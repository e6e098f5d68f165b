"""What every scenario shares: one throwaway server, databases migrated by Alembic, pgbench, timings.

The server keeps PostgreSQL's durable defaults (fsync and synchronous_commit on), as the fleet's
database does: a benchmark with fsync off would report commits this machine's disk cannot do.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tools.harness import CRON_DATABASE, ThrowawayPostgres, alembic, drop_database, migrated_database

PGBENCH_SCRIPTS = Path(__file__).resolve().parent / "pgbench"
LEGACY = "0001_fleet_schema"
SERVER_SETTINGS: tuple[str, ...] = (
    "fsync=on",
    "shared_buffers=2GB",
    "max_wal_size=8GB",
    "max_connections=100",
)


class BenchmarkInvariantError(AssertionError):
    """A scenario's data or outcome is not what it was built to be: its figures would mean nothing."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchmarkInvariantError(message)


@dataclass
class PgbenchRun:
    cycles_per_second: float
    cycles: int


@dataclass
class Harness:
    """One server for a whole benchmark run; ``quick`` makes every scenario small and short.

    ``settings`` are the server's (durable by default; a script measuring without fsync says so in what
    it prints)."""

    quick: bool
    settings: tuple[str, ...] = SERVER_SETTINGS
    pg: ThrowawayPostgres = field(init=False)

    def __enter__(self) -> "Harness":
        self.pg = ThrowawayPostgres(preload_pg_cron=True, settings=self.settings)
        self.pgbench_binary = os.path.join(self.pg.bindir, "pgbench")
        if not os.access(self.pgbench_binary, os.X_OK):
            raise RuntimeError(f"no pgbench at {self.pgbench_binary}: install the postgresql package of that server")
        self.pg.start()
        try:
            with self.connect(CRON_DATABASE) as conn:
                conn.execute("CREATE EXTENSION pg_cron")
        except BaseException:
            self.pg.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pg.stop()

    # -- databases -------------------------------------------------------------------------------

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(self.pg.url(dbname), autocommit=True)

    def database(self, name: str, revision: str = LEGACY, cron: str = "off") -> str:
        """A new, empty database at ``revision`` (the fleet's tables as they are today by default)."""
        return migrated_database(self.pg, name, revision, cron=cron).url

    def drop(self, name: str) -> None:
        """Drops a scenario's database, and its pg_cron jobs, which would go on running every minute."""
        drop_database(self.pg, name)

    def upgrade(self, name: str, revision: str = "head", cron: str = "off") -> None:
        alembic(self.pg.url(name), "upgrade", revision, cron=cron)

    # -- measuring -------------------------------------------------------------------------------

    @property
    def runs(self) -> int:
        """How many times each figure is measured; the tables show the median."""
        return 1 if self.quick else 3

    def pgbench(self, dbname: str, script: str, clients: int, seconds: float) -> PgbenchRun:
        """``pgbench -f bench/pgbench/<script>.sql``; one pgbench transaction is one cycle of the script."""
        command = [
            self.pgbench_binary, "--no-vacuum", "--protocol=prepared",
            f"--client={clients}", f"--jobs={min(clients, 4)}", f"--time={max(1, round(seconds))}",
            f"--file={PGBENCH_SCRIPTS / (script + '.sql')}",
            f"--host={self.pg.host}", f"--port={self.pg.port}", f"--username={self.pg.user}", dbname,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        output = result.stdout + result.stderr
        if result.returncode != 0 or "aborted" in output:
            raise RuntimeError(f"pgbench {script} with {clients} clients failed:\n{output}")
        cycles = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
        tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1))
        return PgbenchRun(tps, cycles)


def insert_proxies(conn: psycopg.Connection, count: int) -> None:
    conn.execute("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(1, %s) n", (count,))


def insert_task_history(conn: psycopg.Connection, per_table: int) -> None:
    """Finished, failed and pending tasks from a day ago in both task tables; half have a NULL worker id."""
    for table in ("catalog_tasks", "object_tasks"):
        conn.execute(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
                     "SELECT (ARRAY['done','failed','pending'])[1 + n %% 3], "
                     "       CASE WHEN n %% 2 = 0 THEN 'old_' || n END, now() - interval '1 day' "
                     "  FROM generate_series(1, %s) n", (per_table,))


SERVER_MS = "extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000"


def median_ms(conn: psycopg.Connection, query: str, runs: int, vacuum: str = "") -> dict[str, float]:
    """Median times of ``query``, each call in its own rolled-back transaction (same data every time).

    ``client``: from sending the statement to having its result, as a caller sees it. ``server``:
    its execution on the server, which the query reports as its last column (``SERVER_MS``: from
    the statement's arrival to the end of its work), without the round trip.
    Rolled-back writes leave dead row versions and index entries behind, which no autovacuum clears
    in a table this size; with ``vacuum`` (a table name) they are vacuumed away every 20 calls, as
    autovacuum would keep up with a sweep that commits once a minute.
    """
    client, server = [], []
    for call in range(runs):
        if vacuum and call % 20 == 19:
            conn.execute(f"VACUUM {vacuum}")
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            row = conn.execute(query).fetchone()
            client.append((time.perf_counter() - started) * 1000)
            server.append(float(row[-1]))
    return {"client": statistics.median(client), "server": statistics.median(server)}


def machine(conn: psycopg.Connection) -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read(), re.M)
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kib = int(re.search(r"MemTotal:\s+(\d+) kB", meminfo.read()).group(1))
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    settings = dict(conn.execute(
        "SELECT name, current_setting(name) FROM pg_settings "
        "WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'wal_sync_method', 'max_wal_size')"
    ).fetchall())
    cron = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    filesystem = subprocess.run(["stat", "-f", "-c", "%T", data_directory], capture_output=True, text=True).stdout
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "Memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "PostgreSQL": conn.execute("SELECT version()").fetchone()[0],
        "pg_cron": cron[0] if cron else "not installed",
        "Server settings": ", ".join(f"{name}={value}" for name, value in sorted(settings.items())),
        "Data directory": f"{data_directory} ({filesystem.strip() or 'unknown filesystem'})",
    }
