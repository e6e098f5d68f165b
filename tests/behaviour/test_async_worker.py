"""examples/async_worker.py, the asyncpg twin of examples/worker.py, run as `python examples/async_worker.py`.

Every worker is a real process: straight to PostgreSQL, or with its API calls through a real
PgBouncer in transaction pooling mode and its LISTEN straight to PostgreSQL (docs/pgbouncer.md).
Tests synchronise on the database's state (pg_stat_activity, the rows, the audit trail) and on the
worker's log, polled with a deadline, never on sleeps.
"""

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.helpers import wait_until
from tools.harness import ROOT
from tools.throwaway_pgbouncer import ThrowawayPgBouncer, find_pgbouncer

WORKER_FILE = ROOT / "examples" / "async_worker.py"
_spec = importlib.util.spec_from_file_location("example_async_worker", WORKER_FILE)
async_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(async_worker)
LISTENING = 'LISTEN "proxy_available"'  # what asyncpg's add_listener sends


@pytest.fixture(autouse=True)
def scraper_role(db):
    """The worker connects as a member of proxy_leases_worker and nothing else (docs/operations.md, "Roles and rights")."""
    db.run("CREATE ROLE scraper LOGIN IN ROLE proxy_leases_worker")
    yield
    db.run("DROP OWNED BY scraper; DROP ROLE scraper")


@pytest.fixture
def pgbouncer(pg_server):
    """PgBouncer 1.18 in pool_mode=transaction, one server connection per (database, user)."""
    try:
        find_pgbouncer()
    except RuntimeError as missing:
        pytest.skip(str(missing))
    with ThrowawayPgBouncer(server_port=pg_server.port, users=("postgres", "scraper"),
                            pool_mode="transaction", default_pool_size=1) as bouncer:
        yield bouncer


def dsn(db):
    return db.url.replace("://postgres@", "://scraper@")


class Worker:
    """`python examples/async_worker.py` with the given environment; its log goes to a file."""

    def __init__(self, tmp_path, worker_id, dsn, **env):
        self.worker_id = worker_id
        self.log_path = tmp_path / f"{worker_id}.log"
        environ = {**os.environ, "DSN": dsn, "WORKER_ID": worker_id, "DEMO_SCRAPE_SECONDS": "0.05",
                   "IDLE_WAIT_SECONDS": "60", **env}
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, str(WORKER_FILE)], cwd=ROOT, env=environ,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        return self.log_path.read_text()

    def running(self):
        return self.process.poll() is None

    def stop(self, signum=signal.SIGTERM, timeout=10):
        """Send signum; the exit code and how long it took to exit."""
        sent = time.monotonic()
        if self.running():
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout)
        finally:
            if self.running():
                self.process.kill()
                self.process.wait()
        return self.process.returncode, time.monotonic() - sent

    def kill(self):
        if self.running():
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workers(tmp_path):
    """start(worker_id, dsn, **env) -> Worker; whatever a test leaves running is killed after it."""
    started = []

    def start(worker_id, dsn, **env):
        started.append(Worker(tmp_path, worker_id, dsn, **env))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


def proxy(db, proxy_id=1):
    return db.one("SELECT is_in_use, worker_id, is_blocked, strike_count FROM proxies WHERE id = %s", (proxy_id,))


def task(db, table="catalog_tasks", task_id=1):
    return db.one(f"SELECT status, worker_id FROM {table} WHERE id = %s", (task_id,))


def done(db):
    return db.one("SELECT (SELECT count(*) FROM catalog_tasks WHERE status = 'done')"
                  " + (SELECT count(*) FROM object_tasks WHERE status = 'done')")


def backends(db, application_name):
    """(pid, state, query) of the backends of this database with that application_name."""
    return db.all("SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()"
                  " AND application_name = %s ORDER BY pid", (application_name,))


def listener(db, worker_id):
    """The pid of the worker's LISTEN backend once it listens, idle; else None."""
    rows = backends(db, f"async_worker {worker_id} listen")
    return rows[0][0] if len(rows) == 1 and rows[0][1:] == ("idle", LISTENING) else None


def record_task_history(db):
    """Every status a catalog task goes through, with its worker, in task_history."""
    db.run("CREATE TABLE task_history (id serial, status text, worker_id text)")
    db.run("GRANT INSERT ON task_history TO scraper; GRANT USAGE ON SEQUENCE task_history_id_seq TO scraper")
    db.run("CREATE FUNCTION record_status() RETURNS trigger LANGUAGE plpgsql AS "
           "$$ BEGIN INSERT INTO task_history (status, worker_id) VALUES (NEW.status, NEW.worker_id); RETURN NULL; END $$")
    db.run("CREATE TRIGGER record_status AFTER UPDATE OF status ON catalog_tasks "
           "FOR EACH ROW EXECUTE FUNCTION record_status()")


def history(db):
    return db.all("SELECT status, worker_id FROM task_history ORDER BY id")


def lease_events(db):
    return db.all("SELECT proxy_id, event, reason, worker_id, lease_token, leased_until - leased_at"
                  " FROM proxy_lease_events ORDER BY id")


def assert_grants_and_releases_alternate(events):
    """Per proxy: granted, released, granted, released…, each release ending the grant before it."""
    for proxy_id in {event[0] for event in events}:
        mine = [event for event in events if event[0] == proxy_id]
        assert [event[1] for event in mine] == ["granted", "released"] * (len(mine) // 2), mine
        for granted, released in zip(mine[::2], mine[1::2]):
            assert granted[2] == "acquired" and released[2] == "released_by_worker", (granted, released)
            assert granted[3:5] == released[3:5], (granted, released)


def test_workers_share_a_small_pool_straight_to_postgresql_woken_by_notify(db, workers):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    db.run("INSERT INTO catalog_tasks (payload) SELECT jsonb_build_object('n', n) FROM generate_series(1, 5) n")
    db.run("INSERT INTO object_tasks (payload) SELECT jsonb_build_object('n', n) FROM generate_series(1, 5) n")
    started = time.monotonic()
    # IDLE_WAIT_SECONDS=60 is also the wait for a proxy: a worker that missed a notification would sit out a minute.
    running = [workers(f"c1_{n}", dsn(db), DEMO_SCRAPE_SECONDS="0.1", LEASE_SECONDS="90", HEARTBEAT_SECONDS="0.05")
               for n in (1, 2, 3)]
    wait_until(lambda: done(db) == 10 or not all(w.running() for w in running), "all 10 tasks done", timeout=20)
    elapsed = time.monotonic() - started
    assert all(w.running() for w in running), [w.log() for w in running]
    # Each worker: its two pooled connections and its listener, which listens.
    for n in (1, 2, 3):
        assert len(backends(db, f"async_worker c1_{n}")) == 2
        assert listener(db, f"c1_{n}") is not None
    for worker in running:
        assert worker.stop()[0] == 0, worker.log()
    assert elapsed < 15  # 10 scrapes of 0.1 s through 2 proxies; nobody slept through its 60 s
    logs = "".join(w.log() for w in running)
    assert "Traceback" not in logs and " ERROR " not in logs and "lost task" not in logs, logs
    for table in ("catalog_tasks", "object_tasks"):
        assert db.all(f"SELECT DISTINCT status FROM {table}") == [("done",)]
        assert db.one(f"SELECT bool_and(worker_id ~ '^c1_[1-3]$') FROM {table}")
    assert db.all("SELECT is_in_use, worker_id, is_blocked, strike_count FROM proxies") == [(False, None, False, 0)] * 2
    events = lease_events(db)
    assert len(events) == 20  # one grant and one clean release per task: one proxy per scrape
    assert_grants_and_releases_alternate(events)
    # LEASE_SECONDS went to acquire_proxy as a timedelta, which asyncpg sent as an interval.
    assert all(abs(event[5] - timedelta(seconds=90)) < timedelta(seconds=1) for event in events if event[1] == "granted")
    # Nothing of the workers is left connected.
    wait_until(lambda: db.one("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'async_worker %'") == 0,
               "the workers' connections to close")


def test_through_pgbouncer_in_transaction_mode_with_listen_straight_to_postgresql(db, workers, pgbouncer):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks (payload) SELECT '{}' FROM generate_series(1, 8)")
    through_pgbouncer = pgbouncer.url(db.name, "scraper")
    started = time.monotonic()
    running = [workers(f"c2_{n}", through_pgbouncer, PGBOUNCER="1", LISTEN_DSN=dsn(db), HEARTBEAT_SECONDS="0.05")
               for n in (1, 2)]
    wait_until(lambda: done(db) == 8 or not all(w.running() for w in running), "all 8 tasks done", timeout=20)
    elapsed = time.monotonic() - started
    assert all(w.running() for w in running), [w.log() for w in running]
    assert elapsed < 15  # one proxy for two workers: each waited on LISTEN, and was woken

    # PgBouncer's side: both workers' pools, four client connections, share one server connection.
    pools = [row for row in pgbouncer.admin("SHOW POOLS") if row["database"] == db.name]
    assert [(row["user"], row["pool_mode"]) for row in pools] == [("scraper", "transaction")]
    clients = [row for row in pgbouncer.admin("SHOW CLIENTS") if row["database"] == db.name]
    assert sorted(row["application_name"] for row in clients) == ["async_worker c2_1"] * 2 + ["async_worker c2_2"] * 2
    servers = [row for row in pgbouncer.admin("SHOW SERVERS") if row["database"] == db.name]
    assert len(servers) == 1
    bouncer_backend = servers[0]["remote_pid"]
    stats = next(row for row in pgbouncer.admin("SHOW STATS") if row["database"] == db.name)
    assert stats["total_xact_count"] >= 8 * 3  # per task at least a claim, an acquire_proxy and a settle

    # PostgreSQL's side: the workers' only backends are PgBouncer's one and their two listeners,
    # which came straight from the workers and listen.
    listeners = {listener(db, "c2_1"), listener(db, "c2_2")}
    assert None not in listeners and bouncer_backend not in listeners
    assert {pid for pid, in db.all("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND usename = 'scraper'")} == listeners | {bouncer_backend}

    for worker in running:
        assert worker.stop()[0] == 0, worker.log()
    logs = "".join(w.log() for w in running)
    assert "Traceback" not in logs and " ERROR " not in logs and "lost task" not in logs, logs
    assert logs.count("through http://10.0.0.1:3128") == 8
    assert db.all("SELECT DISTINCT status FROM catalog_tasks") == [("done",)]
    assert proxy(db) == (False, None, False, 0)
    events = lease_events(db)
    assert len(events) == 16
    assert_grants_and_releases_alternate(events)


def test_without_statement_cache_size_0_asyncpg_fails_through_pgbouncer_in_transaction_mode(db, workers, pgbouncer):
    """The control for the test above: PGBOUNCER unset keeps asyncpg's named prepared statements."""
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks (payload) SELECT '{}' FROM generate_series(1, 4)")
    running = [workers(f"c4_{n}", pgbouncer.url(db.name, "scraper"), LISTEN_DSN=dsn(db), HEARTBEAT_SECONDS="0.05")
               for n in (1, 2)]
    wait_until(lambda: not all(w.running() for w in running), "a worker to fail")
    failed = next(w for w in running if not w.running())
    assert failed.process.returncode != 0
    assert 'prepared statement "__asyncpg_stmt_' in failed.log(), failed.log()


def test_a_listener_connection_killed_by_the_server_reconnects_and_the_worker_keeps_working(db, workers):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1'")
    db.run("INSERT INTO catalog_tasks (payload) SELECT '{}' FROM generate_series(1, 6)")
    worker = workers("c3_1", dsn(db))

    def rounds():
        """How often the worker found no proxy: it logs it after acquire_proxy came back empty,
        and then only a notification (or its 60 s timeout) makes it look again."""
        return worker.log().count("c3_1 waits for a proxy for task 1")

    wait_until(lambda: listener(db, "c3_1") is not None and rounds() >= 1, "the worker to wait for a proxy, listening")
    assert task(db) == ("processing", "c3_1")
    old = listener(db, "c3_1")
    looked = rounds()
    assert looked == 1  # the worker listens before it first looks for a proxy: nothing woke it since

    assert db.one("SELECT pg_terminate_backend(%s)", (old,))
    wait_until(lambda: listener(db, "c3_1") not in (None, old), "a new LISTEN backend", timeout=10)
    new = listener(db, "c3_1")
    assert [pid for pid, _, _ in backends(db, "async_worker c3_1 listen")] == [new]
    assert not db.one("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (old,))
    # Reconnected, the listener wakes the waiter, which may have missed a notification: one more look.
    wait_until(lambda: rounds() == looked + 1, "the worker to look again after the reconnection")
    assert task(db) == ("processing", "c3_1")  # the look touched the task: still ours

    freed = time.monotonic()
    db.run("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE worker_id = 'other_1'")
    wait_until(lambda: task(db) == ("done", "c3_1"), "the notification on the new connection to wake the worker",
               timeout=5)
    assert time.monotonic() - freed < 5  # not its 60 s timeout
    assert rounds() == looked + 1
    wait_until(lambda: done(db) == 6 or not worker.running(), "all 6 tasks done")
    assert worker.running(), worker.log()
    assert listener(db, "c3_1") == new
    code, _ = worker.stop()
    log = worker.log()
    assert code == 0, log
    assert log.count("async_worker c3_1 listen: listening on proxy_available") == 2, log
    assert f"async_worker c3_1 listen: listening on proxy_available (server pid {old})" in log
    assert "async_worker c3_1 listen: connection lost" in log
    assert f"async_worker c3_1 listen: listening on proxy_available (server pid {new})" in log
    assert "Traceback" not in log and "lost task" not in log, log
    assert db.all("SELECT DISTINCT status, worker_id FROM catalog_tasks") == [("done", "c3_1")]
    assert proxy(db) == (False, None, False, 0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM-stops", "SIGINT-cancels"])
def test_a_signal_mid_task_gives_back_proxy_and_task_and_exits_0(db, workers, signum):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    db.run("INSERT INTO object_tasks DEFAULT VALUES")
    worker = workers("c7_1", dsn(db), DEMO_SCRAPE_SECONDS="120")
    wait_until(lambda: "through http://10.0.0." in worker.log() or not worker.running(), "the worker to scrape")
    assert worker.running(), worker.log()
    assert task(db, "object_tasks") == ("processing", "c7_1")
    assert db.one("SELECT count(*) FROM proxies WHERE worker_id = 'c7_1'") == 1
    code, took = worker.stop(signum)
    log = worker.log()
    assert code == 0, log
    assert took < 3, log
    assert "c7_1 gives task 1 back" in log and "Traceback" not in log, log
    assert task(db, "object_tasks") == ("pending", None)
    assert db.all("SELECT is_in_use, worker_id, strike_count FROM proxies") == [(False, None, 0)] * 2
    # The audit trail: the grant, and its clean release by the worker under the same token.
    (_, granted, why, holder, token, _), (_, released, why_released, released_holder, released_token, _) = \
        lease_events(db)
    assert (granted, why, holder) == ("granted", "acquired", "c7_1")
    assert (released, why_released, released_holder, released_token) == ("released", "released_by_worker", "c7_1", token)
    wait_until(lambda: not db.one("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'async_worker c7_1%%'"),
               "the worker's connections to close")


# A call that takes something, made slow by a trigger: (table, when).
SLOW_CALLS = {
    "claim": ("catalog_tasks", "NEW.status = 'processing'"),
    "acquire_proxy": ("proxies", "NEW.is_in_use AND NOT OLD.is_in_use"),
}


@pytest.mark.parametrize("call", list(SLOW_CALLS))
def test_a_cancellation_during_a_claim_or_a_grant_lets_it_end_and_gives_back_what_it_took(db, workers, call):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    record_task_history(db)
    table, when = SLOW_CALLS[call]
    db.run("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$")
    db.run(f"CREATE TRIGGER a_slow BEFORE UPDATE ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION slow()")
    worker = workers("c9_1", dsn(db))
    wait_until(lambda: db.one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'async_worker c9_1'"
                              " AND wait_event = 'PgSleep'") == 1, f"the {call} to be under way")
    code, took = worker.stop(signal.SIGINT)  # cancels the worker's run() mid-call
    log = worker.log()
    assert code == 0, log
    assert took < 3, log
    assert "through http://" not in log and "c9_1 gives task 1 back" in log, log
    # The call was not cancelled in the database: the claim (and the grant) happened, then went back.
    assert history(db) == [("processing", "c9_1"), ("pending", None)]
    assert proxy(db) == (False, None, False, 0)
    assert [event[1:4] for event in lease_events(db)] == (
        [("granted", "acquired", "c9_1"), ("released", "released_by_worker", "c9_1")] if call == "acquire_proxy" else [])


def test_sigterm_while_waiting_for_a_proxy_gives_the_task_back(db, workers):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1'")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    worker = workers("c8_1", dsn(db))
    wait_until(lambda: task(db) == ("processing", "c8_1") and listener(db, "c8_1") is not None,
               "the claim, and the listener")
    code, took = worker.stop()
    assert code == 0, worker.log()
    assert took < 3  # not its 60 s wait
    assert task(db) == ("pending", None)
    assert proxy(db) == (True, "other_1", False, 0)


def test_a_lost_lease_cancels_the_scrape_at_once_and_never_frees_the_new_holders_proxy(db, workers):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    record_task_history(db)
    worker = workers("c5_1", dsn(db), DEMO_SCRAPE_SECONDS="120", HEARTBEAT_SECONDS="0.05", LEASE_SECONDS="600")
    wait_until(lambda: "through http://10.0.0.1:3128" in worker.log() or not worker.running(), "the worker to scrape")
    granted_until = db.one("SELECT leased_until FROM proxies WHERE id = 1")
    # The heartbeat renews with LEASE_SECONDS, a timedelta: the lease ends 10 minutes from now, again and again.
    wait_until(lambda: db.one("SELECT leased_until > %s AND leased_until - now() BETWEEN interval '595 s'"
                              " AND interval '600 s' FROM proxies WHERE id = 1", (granted_until,)), "a renewal")

    with db.connect() as thief:  # the proxy is freed and granted to another worker behind c5_1's back
        thief.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1")
        thief.execute("UPDATE proxies SET is_in_use = true, worker_id = 'thief_1' WHERE id = 1")
    stolen = time.monotonic()
    thiefs_token = db.one("SELECT lease_token FROM proxies WHERE id = 1")
    # Its next renewal fails (LP001): the scrape of 120 s is cancelled, the task goes back and is claimed
    # again, and the worker waits for a proxy.
    wait_until(lambda: history(db) == [("processing", "c5_1"), ("pending", None), ("processing", "c5_1")],
               "the task given back and claimed again")
    assert time.monotonic() - stolen < 3
    log = worker.log()
    assert "c5_1 lost task 1: lease" in log and "no longer holds" in log, log
    assert "c5_1 gives task 1 back" in log
    assert log.count("through http://10.0.0.1:3128") == 1  # the one scrape, cancelled
    assert task(db) == ("processing", "c5_1")
    code, _ = worker.stop()
    assert code == 0, worker.log()
    assert history(db) == [("processing", "c5_1"), ("pending", None), ("processing", "c5_1"), ("pending", None)]
    assert task(db) == ("pending", None)
    # The thief keeps its proxy and its token: c5_1's fenced release changed nothing.
    assert proxy(db) == (True, "thief_1", False, 0)
    assert db.one("SELECT lease_token FROM proxies WHERE id = 1") == thiefs_token
    assert [event[1:4] for event in lease_events(db)] == [
        ("granted", "acquired", "c5_1"), ("released", "direct_update", "c5_1"), ("granted", "direct_update", "thief_1")]


def run_once_in_process(db, scrape):
    """BrowserWorker c6_1 in this process, for one scrape: scrape(task, address) is awaited, then it stops."""
    async def main():
        async def once(task, address):
            worker.stop()  # or it would claim the task again straight away
            await scrape(task, address)

        worker = async_worker.BrowserWorker(dsn(db), "c6_1", once, idle_wait=60)
        await asyncio.wait_for(worker.run(), 20)

    asyncio.run(main())


@pytest.mark.parametrize("cooldown", [None, timedelta(minutes=10)], ids=["until-unblocked", "cooldown"])
def test_a_banned_proxy_is_blocked_for_its_cooldown_and_its_task_goes_back_to_pending(db, cooldown):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO object_tasks DEFAULT VALUES")

    async def scrape(task, address):
        raise async_worker.Banned("HTTP 403 from example.com", cooldown=cooldown)

    run_once_in_process(db, scrape)
    assert task(db, "object_tasks") == ("pending", None)
    assert proxy(db) == (False, None, True, 1)  # free, blocked, one strike: the block's, none for the requeue
    reason, blocked_for = db.one("SELECT blocked_reason, blocked_until - blocked_at FROM proxies")
    assert reason == "HTTP 403 from example.com"
    if cooldown is None:
        assert blocked_for is None
    else:  # the timedelta reached block_proxy as an interval
        assert abs(blocked_for - cooldown) < timedelta(seconds=1)


def test_a_scrape_that_fails_marks_the_task_failed_and_releases_cleanly(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET strike_count = 2")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")

    async def scrape(task, address):
        raise ValueError("the page had no price")

    run_once_in_process(db, scrape)
    assert task(db) == ("failed", "c6_1")
    assert proxy(db) == (False, None, False, 0)  # a clean release forgives the strikes
