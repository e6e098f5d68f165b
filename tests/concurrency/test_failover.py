"""Failover: a primary with pg_cron killed under eight live workers and one dead one, and its streaming
standby promoted. No proxy is granted twice across it, tokens keep increasing, the same pg_cron job runs
the maintenance on the new primary within one period, and the dead worker's proxy comes back within
lease + one period of the failover. What the fleet can expect, and why replication must be synchronous:
docs/server-faults.md, "Failover to a standby".

Replication is synchronous (synchronous_standby_names = '*' on the primary). A call cut by the kill is in
doubt; each worker repeats it, which the API makes safe. Both servers run on one host, so the standby
listens on another port than the one pg_cron's job names (cron.job.nodeport): the promotion points the
job at it, as a promotion hook would have to wherever the new primary listens elsewhere. pg_cron 1.4
fires at the top of each minute, so the kill is timed 12 to 24 s before one: long enough for the dead
worker's lease (10 s) to run out first, short enough to keep the test near a minute.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

import asyncpg
import psycopg
import pytest

from proxy_leases.migrations.pg_cron import job_name
from soak.checker import Checker
from soak.records import Records, Worker
from soak.run import migrate_fleet_database
from tools.harness import CRON_DATABASE, ThrowawayPostgres
from tools.throwaway_standby import ThrowawayStandby


LEASE = 10.0            # lease_duration
ORPHAN_GRACE = 5.0      # above the live workers' longest hold (two holds of at most 0.4 s)
HEARTBEAT_TIMEOUT = 60  # so that the dead worker's task is not requeued first: its lease must free the proxy
PERIOD = 60.0           # pg_cron 1.4: every minute, at the top of the minute
MARGIN = 2.0            # pg_cron's start, the run's own time
PROXIES = 20            # never exhausted by 9 workers: acquire_proxy reclaims nothing, only the sweep frees
PSYCOPG_WORKERS, ASYNCPG_WORKERS = 6, 2
WARM_UP = 5.0
KILL_WINDOW = (36.0, 48.0)  # seconds into the minute
WORKER_ROLE = "failover_worker"
CALL_TIMEOUT = 5.0


def seconds_to_kill(earliest: float) -> float:
    """When to kill: the first moment from `earliest` that lies in KILL_WINDOW of its minute."""
    into = earliest % 60
    if into < KILL_WINDOW[0]:
        return earliest + KILL_WINDOW[0] - into
    if into <= KILL_WINDOW[1]:
        return earliest
    return earliest + 60 - into + KILL_WINDOW[0]


@pytest.fixture
def failover_pair():
    """A primary with proxy-leases and its pg_cron job installed, and a synchronous streaming standby."""
    with ThrowawayPostgres(preload_pg_cron=True) as primary:
        fleet_url = migrate_fleet_database(primary, cron=True)
        with psycopg.connect(fleet_url, autocommit=True) as conn:
            conn.execute("UPDATE proxy_lease_settings SET lease_duration = make_interval(secs => %s), "
                         "orphan_grace = make_interval(secs => %s), heartbeat_timeout = make_interval(secs => %s)",
                         (LEASE, ORPHAN_GRACE, HEARTBEAT_TIMEOUT))
            conn.execute("INSERT INTO proxies (address) SELECT format('http://10.1.0.%%s:3128', n) "
                         "FROM generate_series(1, %s) n", (PROXIES,))
            conn.execute(f"CREATE ROLE {WORKER_ROLE} LOGIN IN ROLE proxy_leases_worker")
        with ThrowawayStandby(primary) as standby:
            # After the copy, so that the standby does not inherit it: a promoted standby that waits for a
            # synchronous standby of its own would hang every commit.
            with psycopg.connect(primary.url(CRON_DATABASE), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("SELECT pg_reload_conf()")
                deadline = time.monotonic() + 15
                while conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall() != [("sync",)]:
                    assert time.monotonic() < deadline, "the standby never became synchronous"
                    time.sleep(0.1)
            yield primary, standby


class ConnectionLost(Exception):
    """The call's connection broke (or none could be made): its outcome is in doubt."""


class FencedOut(Exception):
    """renew_proxy_lease raised LP001: the grant is gone."""


class PsycopgSession:
    def __init__(self, url: str) -> None:
        self.url, self.conn = url, None

    def call(self, query: str, *args: object) -> tuple | None:
        try:
            if self.conn is None:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
            # The queries are written for asyncpg ($1, $2); psycopg's placeholder is %s.
            return self.conn.execute(query.replace("$1", "%s").replace("$2", "%s"), args).fetchone()
        except psycopg.OperationalError as exc:  # refused, read-only, cut by the kill (57P01)
            self.close()
            raise ConnectionLost(f"psycopg.{type(exc).__name__}") from exc
        except psycopg.Error as exc:
            if exc.sqlstate == "LP001":
                raise FencedOut() from exc
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    dispose = close


class AsyncpgSession:
    """asyncpg, driven from the worker's own thread through an event loop of its own."""

    LOST = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError,
            asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.TargetServerAttributeNotMatched)

    def __init__(self, url: str) -> None:
        self.url, self.conn, self.loop = url, None, asyncio.new_event_loop()

    def call(self, query: str, *args: object) -> asyncpg.Record | None:
        try:
            if self.conn is None:
                self.conn = self.loop.run_until_complete(asyncpg.connect(self.url, timeout=CALL_TIMEOUT))
            return self.loop.run_until_complete(self.conn.fetchrow(query, *args, timeout=CALL_TIMEOUT))
        except self.LOST as exc:
            self.close()
            raise ConnectionLost(f"asyncpg.{type(exc).__name__}") from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == "LP001":
                raise FencedOut() from exc
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None

    def dispose(self) -> None:
        self.close()
        self.loop.close()


class FleetWorker(threading.Thread):
    """acquire → renew → release, again and again, through the two-host URL; every call recorded for the
    soak's checker. A call cut by the failover is repeated once a connection is back."""

    def __init__(self, worker: Worker, session: PsycopgSession | AsyncpgSession, records: Records,
                 stop: threading.Event) -> None:
        super().__init__(name=worker.worker_id, daemon=True)
        self.worker, self.session, self.records, self.stop = worker, session, records, stop
        self.grant: tuple[int, int] | None = None
        self.renewed = False
        self.down_since: float | None = None
        self.reconnect_waits: list[float] = []
        self.lost_by: Counter[str] = Counter()
        self.granted_at: list[float] = []  # when each acquire_proxy reply came
        self.release_in_doubt = False
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                except ConnectionLost as lost:
                    self.lost_by[str(lost)] += 1
                    self.down_since = self.down_since or time.time()
                    self.stop.wait(random.uniform(0.05, 0.15))
            while self.grant is not None:  # the database is back by the end: give back what is held
                self.release()
        except BaseException as exc:  # anything but a lost connection is a failure of the test
            self.failure = exc
        finally:
            self.session.dispose()

    def call(self, query: str, *args: object) -> tuple:
        """One statement, bookkept as soak/records.py expects: (row, sent at, replied at, quiet since)."""
        sent = time.time()
        quiet_since = self.records.statement_sent(self.worker)
        try:
            row = self.session.call(query, *args)
        finally:
            self.records.statement_done(self.worker, time.time())
        replied = time.time()
        if self.down_since is not None:
            self.reconnect_waits.append(replied - self.down_since)
            self.down_since = None
        return row, sent, replied, quiet_since

    def step(self) -> None:
        if self.grant is None:
            row, sent, replied, _ = self.call("SELECT proxy_id, lease_token FROM acquire_proxy($1)",
                                              self.worker.worker_id)
            if row is None:
                self.stop.wait(0.2)
                return
            self.grant, self.renewed = (row[0], row[1]), False
            self.records.on_acquire(self.worker, row[0], row[1], replied, sent)
            self.granted_at.append(replied)
        elif not self.renewed:
            self.stop.wait(random.uniform(0.1, 0.4))
            proxy_id, token = self.grant
            try:
                row, sent, replied, quiet = self.call(
                    "SELECT extract(epoch FROM renew_proxy_lease($1, $2))::float8", proxy_id, token)
            except FencedOut:
                self.records.on_fenced(self.worker, "renew", proxy_id, token, time.time(), False)
                self.grant = None
                return
            self.records.on_fenced(self.worker, "renew", proxy_id, token, sent, True, replied_at=replied,
                                   quiet_since=quiet, returned=row[0])
            self.renewed = True
        else:
            self.stop.wait(random.uniform(0.1, 0.4))
            self.release()

    def release(self) -> None:
        proxy_id, token = self.grant
        try:
            row, sent, replied, quiet = self.call("SELECT release_proxy($1, $2)", proxy_id, token)
        except ConnectionLost:
            self.release_in_doubt = True
            raise
        self.records.on_fenced(self.worker, "release", proxy_id, token, sent, row[0], replied_at=replied,
                               quiet_since=quiet)
        if self.release_in_doubt and not row[0]:
            self.records.count("release_in_doubt_found_done")
        self.grant, self.release_in_doubt = None, False


def sample(checker: Checker, url: str) -> None:
    """One checker sample; through the failover, a new connection on whichever host is the primary."""
    try:
        checker.sample()
    except psycopg.OperationalError:
        checker.conn.close()
        try:
            checker.conn = psycopg.connect(url, autocommit=True, connect_timeout=2)
        except psycopg.OperationalError:
            pass  # no primary yet: the next sample tries again


def pg_cron_launchers(server: ThrowawayPostgres) -> int:
    with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
                            ).fetchone()[0]


def test_a_failover_to_a_synchronous_standby_double_grants_nothing_and_the_maintenance_follows(failover_pair):
    primary, standby = failover_pair
    started = time.monotonic()
    hosts = f"{primary.host}:{primary.port},{standby.host}:{standby.port}"
    admin_url = f"postgresql://postgres@{hosts}/fleet?target_session_attrs=read-write"
    worker_url = f"postgresql://{WORKER_ROLE}@{hosts}/fleet?target_session_attrs=read-write"
    with psycopg.connect(primary.url(CRON_DATABASE), autocommit=True) as conn:
        (sweep_job,) = conn.execute("SELECT jobid FROM cron.job WHERE jobname = %s", (job_name("fleet"),)).fetchone()
    # pg_cron's scheduler runs on the primary only; the standby has none while it is one.
    assert (pg_cron_launchers(primary), pg_cron_launchers(standby)) == (1, 0)

    records = Records()
    checker = Checker(admin_url, records, bound=LEASE + PERIOD + MARGIN, lease=LEASE)
    stop = threading.Event()
    workers = [FleetWorker(records.add_worker(f"fo_{n}", "fo"),
                           PsycopgSession(worker_url) if n <= PSYCOPG_WORKERS else AsyncpgSession(worker_url),
                           records, stop)
               for n in range(1, PSYCOPG_WORKERS + ASYNCPG_WORKERS + 1)]
    for worker in workers:
        worker.start()
    try:
        kill_at = seconds_to_kill(time.time() + WARM_UP)
        while time.time() < kill_at - 1:
            sample(checker, admin_url)
            time.sleep(0.2)

        # The dead worker: claims a task (as the fleet's code does), takes a proxy, and is never heard of again.
        dead = records.add_worker("fo_99", "fo")
        with psycopg.connect(primary.url("fleet"), autocommit=True) as conn:
            conn.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', %s, now())",
                         (dead.worker_id,))
        with psycopg.connect(primary.url("fleet").replace("postgres@", f"{WORKER_ROLE}@"), autocommit=True) as conn:
            asked = time.time()
            dead_proxy, dead_token = conn.execute("SELECT proxy_id, lease_token FROM acquire_proxy(%s)",
                                                  (dead.worker_id,)).fetchone()
            records.on_acquire(dead, dead_proxy, dead_token, time.time(), asked)
        records.died(dead, time.time(), "stopped just before the failover")
        while time.time() < kill_at:
            sample(checker, admin_url)
            time.sleep(0.1)

        killed_at = time.time()
        primary.crash()
        standby.promote()
        promoted_at = time.time()
        with psycopg.connect(standby.url(CRON_DATABASE), autocommit=True) as conn:
            # The job came over as it was: the same id, and the old primary's port (see the docstring).
            assert conn.execute("SELECT nodeport FROM cron.job WHERE jobid = %s", (sweep_job,)).fetchone() == (
                primary.port,)
            conn.execute("UPDATE cron.job SET nodeport = inet_server_port() WHERE nodeport = %s", (primary.port,))

        # Until the first maintenance run on the new primary has finished (it must start within a period).
        first_run = None
        while first_run is None:
            assert time.time() < promoted_at + PERIOD + MARGIN + 5, standby.server_log()[-3000:]
            sample(checker, admin_url)
            time.sleep(0.3)
            with psycopg.connect(standby.url("fleet"), autocommit=True) as conn:
                first_run = conn.execute(
                    "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8, "
                    "failures FROM proxy_lease_maintenance_runs WHERE started_at >= to_timestamp(%s) "
                    "AND finished_at IS NOT NULL ORDER BY id LIMIT 1", (promoted_at,)).fetchone()
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    run_started, run_finished, failures = first_run
    with psycopg.connect(standby.url(CRON_DATABASE), autocommit=True) as conn:
        cron_runs = conn.execute("SELECT jobid, status, return_message FROM cron.job_run_details "
                                 "WHERE start_time >= to_timestamp(%s) AND database = 'fleet' ORDER BY runid",
                                 (promoted_at,)).fetchall()
    with psycopg.connect(standby.url("fleet"), autocommit=True) as conn:
        dead_release = conn.execute(
            "SELECT extract(epoch FROM occurred_at)::float8, reason FROM proxy_lease_events "
            "WHERE event = 'released' AND proxy_id = %s AND lease_token = %s", (dead_proxy, dead_token)).fetchall()
        tokens_before, tokens_after = conn.execute(
            "SELECT array_agg(lease_token ORDER BY id) FILTER (WHERE occurred_at < to_timestamp(%s)), "
            "       array_agg(lease_token ORDER BY id) FILTER (WHERE occurred_at > to_timestamp(%s)) "
            "  FROM proxy_lease_events WHERE event = 'granted' AND id > %s",
            (killed_at, promoted_at, checker.trail_start)).fetchone()
        release_reasons = dict(conn.execute(
            "SELECT reason, count(*) FROM proxy_lease_events WHERE event = 'released' AND worker_id <> %s "
            "AND id > %s GROUP BY 1", (dead.worker_id, checker.trail_start)).fetchall())
        still_held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone()[0]
        sync_names = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
    # Then the checker's end checks (a last sample, then the whole trail), on a connection made after the
    # failover; last, as they may tidy up what the run left.
    checker.conn.close()
    checker.conn = psycopg.connect(admin_url, autocommit=True)
    checked = checker.finish()

    waits = [wait for worker in workers for wait in worker.reconnect_waits]
    lost_by = sum((worker.lost_by for worker in workers), Counter())
    dead_freed_at = dead_release[0][0] if dead_release else None
    print(f"\nfailover: first maintenance run on the new primary {run_started - killed_at:.1f} s after the kill "
          f"({run_started - promoted_at:.1f} s after the promotion, which took {promoted_at - killed_at:.2f} s), "
          f"pg_cron job {sweep_job} on both; longest reconnect wait {max(waits, default=0):.2f} s "
          f"({len(waits)} reconnections: {dict(lost_by)}); {checked['grants_checked_against_trail']} grants checked "
          f"({len(tokens_before or [])} granted before the kill, {len(tokens_after or [])} after the promotion), "
          f"violations {sum(checked['violations'].values())}; dead worker's proxy freed "
          f"{(dead_freed_at or float('nan')) - killed_at:.1f} s after the kill (bound {LEASE + PERIOD:.0f} s); "
          f"in-doubt releases found already done {records.counters['release_in_doubt_found_done']}; "
          f"test {time.monotonic() - started:.0f} s")

    assert [worker.name for worker in workers if worker.failure] == [], [w.failure for w in workers if w.failure]
    assert records.errors == []
    # No double grant, in the checker's words: proof intervals, the trail, token order per proxy (I1), nothing
    # held while blocked (I2), the dead worker's proxy within its bound (I3), no row lost or broken (I4, I5),
    # no renewal or release past its lease (I6).
    assert {"I1", "I2", "I3", "I4", "I5", "I6"} <= checked["violations"].keys()
    assert not any(checked["violations"].values()), checked["examples"]
    # Tokens keep increasing across the failover: every grant of the new primary above every grant of the old.
    assert len(tokens_before or []) >= 20 and len(tokens_after or []) >= 20, (tokens_before, tokens_after)
    assert max(tokens_before) < min(tokens_after)
    # Nothing a worker was told was lost: no renewal fenced out, every live grant released by its worker.
    assert records.counters["fenced_out_renew"] == 0
    assert records.counters["fenced_out_release"] == records.counters["release_in_doubt_found_done"]
    assert release_reasons.keys() == {"released_by_worker"}, release_reasons
    assert still_held == 0
    # Every worker came back before its lease could run out, each with new grants from the new primary.
    assert waits and max(waits) < LEASE, waits
    assert all(max(worker.granted_at) > promoted_at for worker in workers)
    assert set(lost_by) <= {"psycopg.OperationalError", "psycopg.AdminShutdown", "psycopg.CrashShutdown",
                            "asyncpg.ConnectionRefusedError", "asyncpg.ConnectionResetError",
                            "asyncpg.ConnectionDoesNotExistError",
                            "asyncpg.AdminShutdownError", "asyncpg.CrashShutdownError",
                            "asyncpg.TargetServerAttributeNotMatched", "asyncpg.CannotConnectNowError"}, lost_by
    # The promoted standby waits for no synchronous standby of its own.
    assert sync_names == ""
    # The maintenance: pg_cron's scheduler started at promotion, and the same job ran within one period.
    assert run_started - promoted_at <= PERIOD + MARGIN
    assert failures == []
    assert cron_runs and cron_runs[0][:2] == (sweep_job, "succeeded"), cron_runs
    # The dead worker's proxy: freed once, for its lease, by that first run, within lease + one period.
    assert len(dead_release) == 1 and dead_release[0][1] == "lease_expired", dead_release
    assert run_started <= dead_freed_at <= run_finished
    assert dead_freed_at - killed_at <= LEASE + PERIOD + MARGIN
