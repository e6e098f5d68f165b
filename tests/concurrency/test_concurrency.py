"""Sweeps, releases and acquisitions at once, on real connections: nobody waits, nothing live is freed."""

import random
import threading
import time

import psycopg
import pytest


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 200) n")
    return db


def test_a_sweep_skips_a_locked_stuck_proxy_instead_of_waiting(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'dead_' || id, "
             "leased_until = now() - interval '1 second' WHERE id <= 3")
    with pool.connect(autocommit=False) as holder, pool.connect() as sweeper:
        holder.execute("SELECT 1 FROM proxies WHERE id = 2 FOR UPDATE")
        sweeper.execute("SET lock_timeout = '100ms'")  # waiting would be an error, not a slow test
        assert sweeper.execute("SELECT release_stuck_proxies()").fetchone()[0] == 2
        holder.rollback()
    assert pool.one("SELECT release_stuck_proxies()") == 1


def test_a_regrant_of_an_expired_proxy_is_a_new_lease_the_sweep_leaves_alone(pool):
    """Re-granted by another worker before the sweep ran: the new grant is live, not stuck."""
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'dead_1', "
             "leased_until = now() - interval '1 second' WHERE id = 1")
    with pool.connect(autocommit=False) as worker, pool.connect(autocommit=False) as sweeper:
        sweeper.execute("SELECT count(*) FROM proxies")  # the sweep's transaction starts first
        worker.execute("UPDATE proxies SET is_in_use = false WHERE id = 1")
        worker.execute("UPDATE proxies SET is_in_use = true, worker_id = 'live_1' WHERE id = 1")
        worker.commit()
        assert sweeper.execute("SELECT release_stuck_proxies()").fetchone()[0] == 0
        sweeper.commit()
    assert pool.one("SELECT worker_id FROM proxies WHERE id = 1") == "live_1"


def test_a_sweep_waits_for_nothing_while_the_release_trigger_holds_the_row(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'w_1', "
             "leased_until = now() - interval '1 second' WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', 'w_1')")
    with pool.connect(autocommit=False) as worker, pool.connect() as sweeper:
        worker.execute("UPDATE catalog_tasks SET status = 'done'")  # trigger locks and frees proxy 1
        sweeper.execute("SET lock_timeout = '100ms'")
        assert sweeper.execute("SELECT release_stuck_proxies()").fetchone()[0] == 0
        worker.commit()
    assert pool.one("SELECT is_in_use FROM proxies WHERE id = 1") is False


def run_together(*callables):
    barrier = threading.Barrier(len(callables))
    results, errors = [None] * len(callables), []

    def runner(index, work):
        try:
            barrier.wait()
            results[index] = work()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=runner, args=item) for item in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def test_concurrent_sweeps_free_each_stuck_proxy_exactly_once(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'dead_' || id, "
             "leased_until = now() - interval '1 second'")

    def sweep():
        with pool.connect() as conn:
            return conn.execute("SELECT release_stuck_proxies()").fetchone()[0]

    freed = run_together(*[sweep] * 6)
    assert sum(freed) == 200
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0


def test_workers_sweeps_and_container_restarts_in_a_storm(pool):
    """24 workers take a proxy, start a task, heartbeat, finish; 2 sweepers and container restarts
    run all along. Each worker checks, at every step, that its proxy is still its own; any freed
    live proxy, deadlock or serialization failure fails the test."""
    pool.run("UPDATE proxy_lease_settings SET orphan_grace = '0 seconds'")  # the harshest setting
    deadline = time.monotonic() + 8
    violations, errors, cycles = [], [], [0]
    lock = threading.Lock()

    def worker(container, n):
        me = f"{container}_{n}"
        rng = random.Random(me)
        with pool.connect() as conn:
            while time.monotonic() < deadline:
                with conn.transaction():  # the legacy way: take a free proxy, then the task, at once
                    row = conn.execute(
                        "UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = ("
                        " SELECT id FROM proxies WHERE NOT is_in_use AND NOT is_blocked"
                        " ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id", (me,)).fetchone()
                    if row is None:
                        continue
                    task = conn.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                                        "VALUES ('processing', %s, now()) RETURNING id", (me,)).fetchone()[0]
                for _ in range(rng.randint(1, 3)):
                    conn.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = %s", (task,))
                    holder = conn.execute("SELECT worker_id FROM proxies WHERE id = %s", row).fetchone()[0]
                    if holder != me:
                        with lock:
                            violations.append((me, row[0], holder))
                conn.execute("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))
                with lock:
                    cycles[0] += 1

    def sweeper():
        with pool.connect() as conn:
            while time.monotonic() < deadline:
                conn.execute("SELECT release_stuck_proxies()")

    def restarts():
        # A container that is not running restarts: its stale grants (made directly) are released.
        with pool.connect() as conn:
            while time.monotonic() < deadline:
                conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'deadbeef_' || id WHERE id = ("
                             " SELECT id FROM proxies WHERE NOT is_in_use LIMIT 1 FOR UPDATE SKIP LOCKED)")
                conn.execute("SELECT release_container_proxies('deadbeef')")

    def guarded(work, *args):
        def run():
            try:
                work(*args)
            except psycopg.Error as error:
                errors.append(f"{type(error).__name__}: {error}")
        return run

    tasks = [guarded(worker, container, n) for container in ("b77514be", "93816237", "e1bf8c63") for n in range(8)]
    tasks += [guarded(sweeper), guarded(sweeper), guarded(restarts)]
    run_together(*tasks)

    print(f"storm: {cycles[0]} take-task-heartbeat-finish cycles by 24 workers in 8 s, "
          f"{len(violations)} violations, {len(errors)} errors")
    assert errors == []
    assert violations == []
    assert cycles[0] > 100, cycles
    assert pool.one("SELECT count(*) FROM proxies") == 200
    # Everyone finished their task. A release that met a proxy row another transaction had locked
    # at that moment left it to the sweeper, by design: after one more sweep nothing is held.
    left_to_the_sweeper = pool.all("SELECT id, worker_id FROM proxies WHERE is_in_use")
    pool.one("SELECT release_stuck_proxies()")
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0, left_to_the_sweeper


def test_a_heartbeat_does_not_wait_for_a_worker_that_is_releasing_its_proxy(pool):
    """Worker: release the proxy, then finish the task, in one transaction. Its heartbeat thread
    beating in between must neither wait for the proxy row nor deadlock with it."""
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'w_1', leased_until = now() + interval '5 s'"
             " WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'w_1', now())")
    with pool.connect(autocommit=False) as worker, pool.connect() as heartbeat:
        worker.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1")
        heartbeat.execute("SET lock_timeout = '200ms'")
        heartbeat.execute("UPDATE catalog_tasks SET heartbeat_at = now() + interval '1 second'")
        worker.execute("SET lock_timeout = '2s'")
        worker.execute("UPDATE catalog_tasks SET status = 'done'")
        worker.commit()
    assert pool.one("SELECT is_in_use FROM proxies WHERE id = 1") is False


def test_the_release_trigger_does_not_deadlock_with_a_worker_releasing_then_finishing(pool):
    """The second reviewer's case: worker releases proxy 1, the heartbeat manager requeues its task
    (the trigger must not wait for proxy 1), then the worker finishes its task."""
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'w_1' WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
             "VALUES ('processing', 'w_1', now() - interval '10 minutes')")
    with pool.connect(autocommit=False) as worker, pool.connect(autocommit=False) as manager:
        worker.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1 AND worker_id = 'w_1'")
        manager.execute("SET lock_timeout = '200ms'")  # waiting for proxy 1 would be an error
        manager.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL "
                        "WHERE heartbeat_at < now() - interval '5 minutes'")
        manager.commit()
        worker.execute("SET lock_timeout = '2s'")
        assert worker.execute("UPDATE catalog_tasks SET status = 'done' WHERE worker_id = 'w_1'").rowcount == 0
        worker.commit()
    assert pool.one("SELECT is_in_use FROM proxies WHERE id = 1") is False
