"""examples/worker.py, exactly as docs/worker.md shows it, run against a migrated database.

The worker is imported from its file (run_worker in threads) or started as `python examples/worker.py`
(signals). Tests synchronise on events and on the database's state, never on sleeps.
"""

import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from tests.helpers import wait_until
from tools.harness import ROOT

WORKER_FILE = ROOT / "examples" / "worker.py"
_spec = importlib.util.spec_from_file_location("example_worker", WORKER_FILE)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


@pytest.fixture(autouse=True)
def scraper_role(db):
    """The worker connects as a member of proxy_leases_worker and nothing else (docs/operations.md, "Roles and rights")."""
    db.run("CREATE ROLE scraper LOGIN IN ROLE proxy_leases_worker")
    yield
    db.run("DROP OWNED BY scraper; DROP ROLE scraper")


def dsn(db):
    return db.url.replace("://postgres@", "://scraper@")


def start_worker(db, worker_id, scrape, stop, **options):
    """run_worker in a thread; what it raises is kept in the returned list."""
    errors = []

    def run():
        try:
            worker.run_worker(dsn(db), worker_id, scrape, stop=stop, **options)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    thread = threading.Thread(target=run, name=worker_id, daemon=True)
    thread.start()
    return thread, errors


def proxy(db, proxy_id=1):
    return db.one("SELECT is_in_use, worker_id, is_blocked, strike_count FROM proxies WHERE id = %s",
                  (proxy_id,))


def task(db, table="catalog_tasks", task_id=1):
    return db.one(f"SELECT status, worker_id FROM {table} WHERE id = %s", (task_id,))


def test_workers_share_a_small_pool_one_proxy_per_scrape_and_are_woken_by_notify(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    db.run("INSERT INTO catalog_tasks (payload) SELECT jsonb_build_object('n', n) FROM generate_series(1, 8) n")
    db.run("INSERT INTO object_tasks (payload) SELECT jsonb_build_object('n', n) FROM generate_series(1, 8) n")
    lock, using, clashes, scraped = threading.Lock(), {}, [], []

    def scrape(task, address):
        with lock:
            if address in using:
                clashes.append((address, using[address], task["worker_id"]))
            using[address] = task["worker_id"]
            scraped.append((task["table"], task["id"]))
        time.sleep(0.1)  # the work itself: long enough for the other workers to find the pool empty
        with lock:
            del using[address]

    stop = threading.Event()
    started = time.monotonic()
    # idle_wait is also the LISTEN timeout: a worker that missed a notification would sit out a minute.
    workers = [start_worker(db, f"c1_{n}", scrape, stop, idle_wait=60, heartbeat_every=0.05) for n in range(1, 6)]
    try:
        wait_until(lambda: db.one("SELECT count(*) FROM catalog_tasks WHERE status = 'done'")
                   + db.one("SELECT count(*) FROM object_tasks WHERE status = 'done'") == 16,
                   "all 16 tasks done", timeout=20)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        for thread, _ in workers:
            thread.join(10)
    assert [errors for _, errors in workers] == [[]] * 5
    assert not any(thread.is_alive() for thread, _ in workers)
    assert clashes == []
    assert sorted(scraped) == [("catalog_tasks", n) for n in range(1, 9)] + [("object_tasks", n) for n in range(1, 9)]
    assert elapsed < 15  # 16 scrapes of 0.1 s through 2 proxies; no worker slept through its 60 s timeout
    for table in ("catalog_tasks", "object_tasks"):
        assert db.all(f"SELECT DISTINCT status FROM {table}") == [("done",)]
        assert db.one(f"SELECT bool_and(worker_id ~ '^c1_[1-5]$') FROM {table}")
    assert db.all("SELECT is_in_use, worker_id, is_blocked, strike_count FROM proxies") == \
        [(False, None, False, 0)] * 2


def test_a_worker_waiting_for_a_proxy_is_woken_by_the_notification(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1'")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    # Count the worker's touches of its task: the second one comes after its LISTEN.
    db.run("CREATE TABLE touches (at timestamptz DEFAULT clock_timestamp())")
    db.run("GRANT INSERT ON touches TO scraper")   # the counting trigger fires as the worker
    db.run("CREATE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS "
           "$$ BEGIN INSERT INTO touches DEFAULT VALUES; RETURN NULL; END $$")
    db.run("CREATE TRIGGER count_touch AFTER UPDATE OF heartbeat_at ON catalog_tasks "
           "FOR EACH ROW EXECUTE FUNCTION count_touch()")
    stop, addresses = threading.Event(), []

    def scrape(task, address):
        addresses.append(address)
        stop.set()

    thread, errors = start_worker(db, "c1_1", scrape, stop, idle_wait=60)
    wait_until(lambda: db.one("SELECT count(*) FROM touches") >= 2, "the worker to listen")
    # Its retry after LISTEN has run and found nothing: from now on only a notification can wake it.
    wait_until(lambda: db.one("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' "
                              "AND query LIKE '%%FROM acquire_proxy(%%'") == 1, "the retry to fail")
    freed = time.monotonic()
    db.run("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE worker_id = 'other_1'")
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert time.monotonic() - freed < 5
    assert addresses == ["http://10.0.0.1:3128"]
    assert task(db) == ("done", "c1_1")
    assert proxy(db) == (False, None, False, 0)


@pytest.mark.parametrize("cooldown", [None, timedelta(minutes=10)], ids=["until-unblocked", "cooldown"])
def test_a_banned_proxy_is_blocked_and_its_task_goes_back_to_pending(db, cooldown):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO object_tasks DEFAULT VALUES")
    stop = threading.Event()

    def scrape(task, address):
        stop.set()  # or the worker would claim the task again straight away
        raise worker.Banned("HTTP 403 from example.com", cooldown=cooldown)

    worker.run_worker(dsn(db), "c1_1", scrape, stop=stop)
    assert task(db, "object_tasks") == ("pending", None)
    assert proxy(db) == (False, None, True, 1)  # free, blocked, one strike: the block's, none for the requeue
    reason, blocked_for = db.one("SELECT blocked_reason, blocked_until - blocked_at FROM proxies")
    assert reason == "HTTP 403 from example.com"
    if cooldown is None:
        assert blocked_for is None
    else:
        assert abs(blocked_for - cooldown) < timedelta(seconds=1)


def test_a_scrape_that_fails_marks_the_task_failed_and_releases_cleanly(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET strike_count = 2")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    stop = threading.Event()

    def scrape(task, address):
        stop.set()
        raise ValueError("the page had no price")

    worker.run_worker(dsn(db), "c1_1", scrape, stop=stop)
    assert task(db) == ("failed", "c1_1")
    assert proxy(db) == (False, None, False, 0)  # a clean release forgives the strikes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_task_gives_back_proxy_and_task_and_exits_0(db, signum):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    db.run("INSERT INTO object_tasks DEFAULT VALUES")
    env = {**os.environ, "DSN": dsn(db), "WORKER_ID": "c7_1", "DEMO_SCRAPE_SECONDS": "120"}
    process = subprocess.Popen([sys.executable, "examples/worker.py"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: db.one("SELECT count(*) FROM proxies WHERE worker_id = 'c7_1'") == 1
                   or process.poll() is not None, "the worker to take a proxy")
        assert process.poll() is None, process.communicate()[1]
        assert task(db, "object_tasks") == ("processing", "c7_1")
        signalled = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=10)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert took < 3, stderr
    assert "through http://10.0.0." in stderr  # it was scraping
    assert task(db, "object_tasks") == ("pending", None)
    assert db.all("SELECT is_in_use, worker_id, strike_count FROM proxies") == [(False, None, 0)] * 2


STEALS = {
    "granted-to-another-worker": [
        "UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1",
        "UPDATE proxies SET is_in_use = true, worker_id = 'thief_1' WHERE id = 1",
    ],
    "lease-expired": [
        "UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = 1",
    ],
    # The requeue's trigger frees the worker's proxy with a strike, unless a heartbeat has the row locked
    # at that instant: then the sweeper would. The explicit release makes either case the same.
    "task-requeued-and-claimed-by-another-worker": [
        "UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE id = 1",
        "UPDATE proxies SET is_in_use = false, worker_id = NULL, strike_count = 1 WHERE worker_id = 'c1_1'",
        "UPDATE catalog_tasks SET status = 'processing', worker_id = 'thief_1', heartbeat_at = now() WHERE id = 1",
        "UPDATE proxies SET is_in_use = true, worker_id = 'thief_1' WHERE id = 1",
    ],
    # The worker has a second task in processing, so the trigger leaves its proxy alone: only the
    # task check can tell it that this task is no longer its own.
    "task-reassigned-lease-intact": [
        "INSERT INTO object_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_1', now())",
        "UPDATE catalog_tasks SET worker_id = 'thief_1' WHERE id = 1",
    ],
}
# What each steal leaves once the worker has given up: (task 1), (proxy 1).
AFTER = {
    "granted-to-another-worker": (("pending", None), (True, "thief_1", False, 0)),
    # The requeue frees the proxy whose lease ran out: a strike, as the sweeper would count.
    "lease-expired": (("pending", None), (False, None, False, 1)),
    "task-requeued-and-claimed-by-another-worker": (("processing", "thief_1"), (True, "thief_1", False, 1)),
    "task-reassigned-lease-intact": (("processing", "thief_1"), (False, None, False, 0)),
}


@pytest.mark.parametrize("noticed_by", ["heartbeat", "settle"])
@pytest.mark.parametrize("steal", list(STEALS))
def test_a_worker_that_lost_its_lease_or_task_neither_finishes_it_nor_frees_another_workers_proxy(
        db, caplog, steal, noticed_by):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    stop, scraping, stolen = threading.Event(), threading.Event(), threading.Event()

    def lost_logged():
        return any("lost task 1" in record.getMessage() for record in caplog.records)

    def scrape(task, address):
        scraping.set()
        assert stolen.wait(10)
        if noticed_by == "heartbeat":
            wait_until(lost_logged, "the heartbeat to notice")
        stop.set()

    caplog.set_level(logging.INFO, logger="worker")
    # heartbeat_every=60: the worker only learns it when it settles, through the fenced call.
    thread, errors = start_worker(db, "c1_1", scrape, stop,
                                  heartbeat_every=0.05 if noticed_by == "heartbeat" else 60)
    assert scraping.wait(10)
    token = db.one("SELECT lease_token FROM proxies WHERE id = 1")
    with db.connect() as thief:
        for statement in STEALS[steal]:
            thief.execute(statement)
    token_after_steal = db.one("SELECT lease_token FROM proxies WHERE id = 1")
    stolen.set()
    thread.join(10)
    assert not thread.is_alive() and errors == []
    assert lost_logged() == (noticed_by == "heartbeat")
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), caplog.text  # the scrape did not fail
    expected_task, expected_proxy = AFTER[steal]
    assert task(db) == expected_task
    assert proxy(db) == expected_proxy
    if expected_proxy[1] == "thief_1":
        assert token_after_steal != token
        assert db.one("SELECT lease_token FROM proxies WHERE id = 1") == token_after_steal


def test_the_heartbeat_renews_the_lease_and_the_task(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    stop = threading.Event()
    seen = {}

    def scrape(task, address):
        seen["claimed"] = task["heartbeat_at"]
        seen["granted"] = db.one("SELECT leased_until FROM proxies WHERE id = 1")
        wait_until(lambda: db.one("SELECT leased_until FROM proxies WHERE id = 1") > seen["granted"]
                   and db.one("SELECT heartbeat_at FROM catalog_tasks WHERE id = 1") > seen["claimed"],
                   "a heartbeat")
        stop.set()

    worker.run_worker(dsn(db), "c1_1", scrape, stop=stop, heartbeat_every=0.05)
    assert seen["claimed"] is not None  # the claim itself sets heartbeat_at
    assert task(db) == ("done", "c1_1")
    assert proxy(db) == (False, None, False, 0)


def test_stopping_while_waiting_for_a_proxy_gives_the_task_back(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1'")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    stop = threading.Event()
    thread, errors = start_worker(db, "c1_1", lambda task, address: None, stop, idle_wait=0.2)
    wait_until(lambda: task(db) == ("processing", "c1_1"), "the claim")
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and errors == []
    assert task(db) == ("pending", None)
    assert proxy(db) == (True, "other_1", False, 0)


def test_a_task_taken_away_while_waiting_for_a_proxy_is_dropped_not_scraped(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'other_1'")
    db.run("INSERT INTO catalog_tasks DEFAULT VALUES")
    stop, scraped = threading.Event(), []
    thread, errors = start_worker(db, "c1_1", lambda task, address: scraped.append(task["id"]), stop,
                                  idle_wait=60)
    try:
        wait_until(lambda: task(db) == ("processing", "c1_1"), "the claim")
        db.run("UPDATE catalog_tasks SET worker_id = 'thief_1' WHERE id = 1")  # e.g. requeued, claimed again
        db.run("UPDATE proxies SET is_in_use = false, worker_id = NULL")  # wakes the worker
        # Woken, it checks its task before taking the proxy, drops the task and looks for another.
        wait_until(lambda: db.one("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' "
                                  "AND query LIKE '%%UPDATE object_tasks SET status = ''processing''%%'") == 1,
                   "the worker to look for another task")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and errors == []
    assert scraped == []
    assert task(db) == ("processing", "thief_1")
    assert proxy(db) == (False, None, False, 0)


def test_the_worker_page_shows_this_exact_worker():
    lines = (ROOT / "docs" / "worker.md").read_text().splitlines()
    heading = next((i for i, line in enumerate(lines) if line.startswith("# A complete worker")), None)
    assert heading is not None, "docs/worker.md has no '# A complete worker' heading"
    block = re.search(r"^```python\n(.*?)^```", "\n".join(lines[heading:]) + "\n", re.S | re.M)
    assert block, "no ```python block after '# A complete worker' in docs/worker.md"

    def normalised(text):
        return "\n".join(line.rstrip() for line in text.rstrip().splitlines())

    assert normalised(block.group(1)) == normalised(WORKER_FILE.read_text())
