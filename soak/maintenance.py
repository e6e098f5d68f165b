"""Everything periodic that is not a worker: the maintenance (when no pg_cron job runs it), an operator
who unblocks quarantined proxies, and a feeder that keeps both task tables stocked with pending tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from soak.config import SoakConfig
from soak.records import Records

TABLES = ("catalog_tasks", "object_tasks")


class Every(threading.Thread):
    """Calls action(conn) every `period` seconds (fixed rate) on a connection of its own. A connection lost
    to a server crash is made again at the next round (the rounds missed while the server was down are
    counted, not reported as errors); any other failure is an error of the run."""

    def __init__(self, name: str, url: str, period: float, action: Callable[[psycopg.Connection], None],
                 records: Records, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.url, self.period, self.action, self.records, self.stop = url, period, action, records, stop

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, application_name=f"soak:{self.name}")

    def run(self) -> None:
        connected_at = time.time()
        conn: psycopg.Connection | None = self._connect()
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    if conn is None:
                        connected_at = time.time()
                        conn = self._connect()
                    self.action(conn)
                except psycopg.OperationalError as exc:
                    if not self.records.lost_to_server_crash(connected_at):
                        self.records.error(f"{self.name}: {type(exc).__name__}: {exc}")
                        if conn is None or conn.closed:
                            return
                    else:
                        self.records.count(f"{self.name}_rounds_lost_to_server_crashes")
                        if conn is not None:
                            conn.close()
                        conn = None
                except Exception as exc:  # noqa: BLE001 - reported; the next round tries again
                    self.records.error(f"{self.name}: {type(exc).__name__}: {exc}")
                    if conn is None or conn.closed:
                        return
                next_at += self.period
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if conn is not None:
                conn.close()


def maintenance(records: Records) -> Callable[[psycopg.Connection], None]:
    def run(conn: psycopg.Connection) -> None:
        started = time.monotonic()
        requeued, released, unblocked = conn.execute("CALL run_lease_maintenance()").fetchone()
        took_ms = round((time.monotonic() - started) * 1000)
        with records.lock:
            records.counters["maintenance_longest_ms"] = max(records.counters["maintenance_longest_ms"], took_ms)
        records.count("maintenance_runs")
        records.count("requeued_tasks", requeued or 0)
        records.count("swept_proxies", released or 0)
        records.count("cooled_down_unblocked", unblocked or 0)
    return run


def operator(config: SoakConfig, records: Records) -> Callable[[psycopg.Connection], None]:
    started = time.monotonic()

    def run(conn: psycopg.Connection) -> None:
        period = int((time.monotonic() - started) // config.toggle_every)
        timeout = config.long_heartbeat_timeout if period % 2 else config.heartbeat_timeout
        if conn.execute("UPDATE proxy_lease_settings SET heartbeat_timeout = make_interval(secs => %s) "
                        "WHERE heartbeat_timeout <> make_interval(secs => %s)", (timeout, timeout)).rowcount:
            records.count("heartbeat_timeout_switches")
        records.count("quarantine_unblocked_by_operator", conn.execute(
            "SELECT count(*) FILTER (WHERE unblock_proxy(id)) FROM proxies "
            " WHERE is_blocked AND blocked_until IS NULL AND blocked_at < now() - make_interval(secs => %s)",
            (config.unblock_quarantined_after,)).fetchone()[0])
    return run


def feeder(config: SoakConfig) -> Callable[[psycopg.Connection], None]:
    def run(conn: psycopg.Connection) -> None:
        for table in TABLES:
            pending = conn.execute(f"SELECT count(*) FROM {table} WHERE status = 'pending'").fetchone()[0]
            if pending < config.pending_tasks:
                conn.execute(f"INSERT INTO {table} (payload) SELECT jsonb_build_object('n', n) "
                             "FROM generate_series(1, %s) n", (2 * config.pending_tasks - pending,))
    return run
