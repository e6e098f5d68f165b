"""Scenario 4: how long a crashed container's proxies stay taken, with nobody but pg_cron to free them.

Two databases, each with its own pg_cron maintenance job (every minute, as installed by Alembic),
1,000 proxies and 25 workers, each on its own connection: 15 of container deadbeef and 10 of
container cafe0001. Each worker takes a proxy with acquire_proxy, claims a task and sends a task
heartbeat every 2 s, as the fleet's workers do. Then the 15 connections of deadbeef are killed
(pg_terminate_backend: the backends die as with a crashed container) and the clock runs until the
audit trail shows all 15 of its proxies released. The other container's proxies must stay held.

  trigger path   heartbeat_timeout 30 s: the maintenance job requeues the dead workers' tasks, and
                 the release trigger frees their proxies in the same statement.
  lease path     heartbeat_timeout 1 day (nobody requeues): only the leases running out free them.

Leases are 60 s (lease_duration), so the bound to meet is 60 s + one schedule period (60 s). The
time is measured on the server's clock: the kill's clock_timestamp() to the last release event's.
Rounds kill at different seconds of the minute, since pg_cron runs on the minute: a heartbeat
renews the lease once a tenth of it has passed, so at the kill the lease ends 54 to 60 s later,
and the worst case is an end just after a run of the job, which a kill at about :01 comes near.

--quick shortens the lease to 3 s and has this script call run_lease_maintenance() every second
instead of pg_cron (minute granularity), so it only shows that the paths work.
"""

from __future__ import annotations

import threading
import time

import psycopg

from bench.harness import Harness, check, insert_proxies

DEAD, LIVE = "deadbeef", "cafe0001"
DEAD_WORKERS, LIVE_WORKERS = 15, 10
PATHS = {"trigger": "30 seconds", "lease": "1 day"}


class Worker(threading.Thread):
    """One browser worker: a proxy from acquire_proxy, a task in processing, a heartbeat every 2 s."""

    def __init__(self, url: str, worker_id: str, task_id: int, beat_every: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.worker_id, self.task_id, self.beat_every, self.stop = url, worker_id, task_id, beat_every, stop
        self.ready = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name=self.worker_id.split("_")[0]) as conn:
                conn.execute("SELECT * FROM acquire_proxy(%s)", (self.worker_id,)).fetchone()
                conn.execute("UPDATE catalog_tasks SET status = 'processing', worker_id = %s, "
                             "heartbeat_at = clock_timestamp() WHERE id = %s", (self.worker_id, self.task_id))
                self.ready.set()
                while not self.stop.wait(self.beat_every):
                    conn.execute("UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = %s",
                                 (self.task_id,))
        except psycopg.OperationalError:
            pass  # killed: the container crashed
        except Exception as error:  # noqa: BLE001 - reported by the scenario
            self.error = error
        finally:
            self.ready.set()


def prepare(harness: Harness, dbname: str, lease: str, grace: str, heartbeat_timeout: str) -> None:
    with harness.connect(dbname) as conn:
        conn.execute("UPDATE proxy_lease_settings SET orphan_grace = %s::interval, lease_duration = %s::interval, "
                     "heartbeat_timeout = %s::interval", (grace, lease, heartbeat_timeout))
        insert_proxies(conn, 1000)


def one_round(harness: Harness, dbname: str, round_number: int, kill_at_second: float | None, bound_s: float,
              sweep_by_hand: bool) -> dict:
    url = harness.pg.url(dbname)
    stop = threading.Event()
    workers = []
    with harness.connect(dbname) as conn:
        tasks = [row[0] for row in conn.execute(
            "INSERT INTO catalog_tasks (status) SELECT 'pending' FROM generate_series(1, %s) RETURNING id",
            (DEAD_WORKERS + LIVE_WORKERS,))]
    for n, task_id in enumerate(tasks):
        container = DEAD if n < DEAD_WORKERS else LIVE
        worker_id = f"{container}_{round_number}{n:02d}"
        workers.append(Worker(url, worker_id, task_id, 0.2 if sweep_by_hand else 2.0, stop))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.ready.wait(30)
    check(all(w.error is None for w in workers), f"worker failed: {[w.error for w in workers if w.error]}")

    with harness.connect(dbname) as conn:
        held = conn.execute("SELECT count(*) FROM proxies WHERE worker_id LIKE %s", (DEAD + r"\_%",)).fetchone()[0]
        check(held == DEAD_WORKERS, f"{dbname}: {held} proxies held by {DEAD} before the kill")
        if kill_at_second is None:
            time.sleep(1)
        else:
            # Kill at the chosen second of the minute, after the workers have beaten for a while.
            now = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()[0]
            wait = (kill_at_second - now % 60) % 60
            time.sleep(wait if wait >= 10 else wait + 60)
        killed_at, killed = conn.execute(
            "SELECT clock_timestamp(), count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()", (DEAD,)).fetchone()
        check(killed == DEAD_WORKERS, f"{dbname}: killed {killed} connections, not {DEAD_WORKERS}")

        deadline = time.monotonic() + bound_s + 60
        while True:
            if sweep_by_hand:
                conn.execute("CALL run_lease_maintenance()")
            left = conn.execute("SELECT count(*) FROM proxies WHERE worker_id LIKE %s",
                                (DEAD + r"\_%",)).fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0 if sweep_by_hand else 0.5)
        recovered_s, reasons = conn.execute(
            "SELECT extract(epoch FROM max(occurred_at) - %s)::float8, array_agg(DISTINCT reason) "
            "  FROM proxy_lease_events WHERE event = 'released' AND worker_id LIKE %s AND occurred_at > %s",
            (killed_at, DEAD + "\\_" + str(round_number) + "%", killed_at)).fetchone()
        live_held = conn.execute("SELECT count(*) FROM proxies WHERE worker_id LIKE %s AND is_in_use",
                                 (LIVE + "\\_" + str(round_number) + "%",)).fetchone()[0]
    stop.set()
    for worker in workers:
        worker.join(10)
    check(left == 0, f"{dbname}: {left} proxies of {DEAD} still held {bound_s + 60:.0f} s after the kill")
    check(live_held == LIVE_WORKERS, f"{dbname}: the live container holds {live_held} proxies, not {LIVE_WORKERS}")
    return {"killed_at_second": kill_at_second, "recovered_s": recovered_s, "reasons": reasons}


def run(harness: Harness) -> dict:
    if harness.quick:
        lease_s, period_s, grace, timeouts = 3, 1, "1 second", {"trigger": "1 second", "lease": "1 day"}
        kill_seconds = (None,)
    else:
        lease_s, period_s, grace, timeouts = 60, 60, "30 seconds", PATHS
        # :01 is near the worst case: a lease renewed just before the kill can end just after a run.
        kill_seconds = (1.0, 5.0, 25.0, 45.0)
    cron = "off" if harness.quick else "require"
    for path, heartbeat_timeout in timeouts.items():
        harness.database(f"recovery_{path}", "head", cron=cron)
        prepare(harness, f"recovery_{path}", f"{lease_s} seconds", grace, heartbeat_timeout)

    bound_s = lease_s + period_s
    results: dict[str, list] = {path: [] for path in timeouts}
    for round_number, kill_at_second in enumerate(kill_seconds):
        # Both paths at once, each in its own database with its own job: the same minute for both.
        threads = []
        for path in timeouts:
            def measure(path: str = path) -> None:
                try:
                    results[path].append(one_round(harness, f"recovery_{path}", round_number, kill_at_second,
                                                   bound_s, harness.quick))
                except Exception as error:  # noqa: BLE001 - raised below, in the main thread
                    results[path].append(error)
            threads.append(threading.Thread(target=measure))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for path in timeouts:
            if isinstance(results[path][-1], Exception):
                raise results[path][-1]
        print(f"  recovery: round {round_number + 1} of {len(kill_seconds)}: " + ", ".join(
            f"{path} path {results[path][-1]['recovered_s']:.1f} s" for path in timeouts), flush=True)
    for path in timeouts:
        harness.drop(f"recovery_{path}")
    return {"lease_s": lease_s, "period_s": period_s, "bound_s": bound_s, "by_pg_cron": not harness.quick,
            "paths": results, "heartbeat_timeouts": timeouts}
