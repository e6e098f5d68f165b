"""An upgrade behind a long transaction fails fast and leaves the fleet's tables usable meanwhile."""

import threading
import time

import psycopg
import pytest

from tests.helpers import wait_for_lock_wait
from tools.harness import HEAD, POOL_FIGURES, Database


def upgrade_in_background(database: Database, outcome: list, **x: str) -> threading.Thread:
    """`upgrade head` in a thread; `outcome` gets "upgraded" or the message it stopped with."""
    def upgrade():
        try:
            database.upgrade(**x)
            outcome.append("upgraded")
        except SystemExit as stop:
            outcome.append(str(stop))

    migration = threading.Thread(target=upgrade)
    migration.start()
    return migration


def test_the_lease_revision_waits_holding_nothing_on_proxies_then_fails_with_instructions(fresh_database):
    database = fresh_database()
    database.upgrade("0002_partial_indexes")
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128'), ('http://10.0.0.2:3128')")
    database.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'w_1', now())")

    outcome = []
    with database.connect(autocommit=False) as long_transaction:
        long_transaction.execute("UPDATE catalog_tasks SET heartbeat_at = now()")  # and never commits
        migration = upgrade_in_background(database, outcome, lock_timeout="3s")
        wait_for_lock_wait(database, "%LOCK TABLE public.catalog_tasks%")
        # While the revision waits, workers still read, take and release proxies.
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '500ms'")
            worker.execute("UPDATE proxies SET is_in_use = true, worker_id = 'w_2' WHERE id = 2")
            worker.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 2")
            assert worker.execute("SELECT count(*) FROM proxies").fetchone()[0] == 2
        migration.join(timeout=30)
        long_transaction.rollback()

    assert len(outcome) == 1 and outcome[0] != "upgraded"
    assert "lock_timeout=3s" in outcome[0] and "changed nothing" in outcome[0] and "pg_stat_activity" in outcome[0]
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0002_partial_indexes"
    assert database.one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'proxies'::regclass "
                        "AND attname = 'leased_until'") == 0

    database.upgrade()
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_the_lease_revision_lets_a_worker_that_releases_then_finishes_go_first(fresh_database):
    """Proxy row, then task row: the opposite order to the triggers. The revision's short lock
    attempts give way instead of deadlocking, and it goes in once the worker has committed."""
    database = fresh_database()
    database.upgrade("0002_partial_indexes")
    database.run("INSERT INTO proxies (address, is_in_use, worker_id) VALUES ('http://10.0.0.1:3128', true, 'w_1')")
    database.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', 'w_1')")
    outcome = []
    with database.connect(autocommit=False) as worker:
        worker.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE worker_id = 'w_1'")
        migration = threading.Thread(target=lambda: outcome.append(database.upgrade(lock_timeout="20s")))
        migration.start()
        wait_for_lock_wait(database, "%LOCK TABLE public.catalog_tasks%")
        worker.execute("SET lock_timeout = '2s'")
        worker.execute("UPDATE catalog_tasks SET status = 'done' WHERE worker_id = 'w_1'")
        worker.commit()
        migration.join(timeout=60)
    assert outcome == [None]
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_the_concurrent_index_build_outwaits_a_long_transaction_without_blocking_writes(fresh_database):
    database = fresh_database()
    database.upgrade("0001_fleet_schema")
    database.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', 'w_1'), ('processing', 'w_2')")
    with database.connect(autocommit=False) as long_transaction:
        long_transaction.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE worker_id = 'w_1'")
        migration = threading.Thread(target=database.upgrade, kwargs={"target": "0002_partial_indexes",
                                                                      "lock_timeout": "1s"})
        migration.start()
        wait_for_lock_wait(database, "%CREATE INDEX CONCURRENTLY%")
        time.sleep(1.5)  # longer than lock_timeout: CONCURRENTLY is exempt, since it blocks nobody
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '500ms'")
            worker.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE worker_id = 'w_2'")
        long_transaction.commit()
        migration.join(timeout=30)
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0002_partial_indexes"
    assert database.one("SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text LIKE '%worker_idx'")


def test_downgrading_the_baseline_refuses_to_drop_created_tables_that_hold_rows(fresh_database):
    database = fresh_database()
    database.upgrade()
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    with pytest.raises(Exception, match="public.proxies holds rows") as failure:
        database.downgrade("base")
    assert failure.value.orig.diag.message_hint.startswith("To keep the table")
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0001_fleet_schema"
    database.run("UPDATE proxy_leases_adopted_tables SET created = false WHERE table_name = 'proxies'")
    database.downgrade("base")
    assert database.one("SELECT count(*) FROM proxies") == 1
    assert database.one("SELECT to_regclass('catalog_tasks')") is None


def test_the_lease_api_revision_waits_for_a_settings_reader_without_holding_up_the_fleet(fresh_database):
    """0006 alters proxy_lease_settings, which any open transaction that read it holds a lock on:
    that lock is taken in the same short, retried attempts as the fleet's tables."""
    database = fresh_database()
    database.upgrade("0005_sweep_schedule")
    database.run("INSERT INTO proxies (address, is_in_use, worker_id) VALUES ('http://10.0.0.1:3128', true, 'w_1')")
    database.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'w_1', now())")

    outcome = []
    with database.connect(autocommit=False) as dashboard:
        dashboard.execute("SELECT lease_duration FROM proxy_lease_settings")  # and stays open
        migration = upgrade_in_background(database, outcome, lock_timeout="3s")
        wait_for_lock_wait(database, "%proxy_lease_settings too, which this revision alters%")  # 0006_lease_api_locks.sql
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '1s'")
            for _ in range(5):  # heartbeats, which renew the lease, keep going through the attempts
                worker.execute("UPDATE catalog_tasks SET heartbeat_at = clock_timestamp()")
                time.sleep(0.1)
        migration.join(timeout=30)
        dashboard.rollback()

    assert len(outcome) == 1 and "lock_timeout=3s" in outcome[0] and "changed nothing" in outcome[0]
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0005_sweep_schedule"
    database.upgrade()
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


LEASE_API = "0006_lease_api"  # the first revision with acquire_proxy / renew_proxy_lease / release_proxy


class Fleet:
    """Workers in threads, each on its own connection (psycopg's defaults: statements prepared after
    five runs, as a real worker's are), recording every call: when it started, ended, and how."""

    def __init__(self, database: Database, pool_size: int, api_workers: int, legacy_workers: int):
        self.database = database
        self.pool_size = pool_size
        self.stop = threading.Event()
        self.guard = threading.Lock()
        self.holders: dict[int, str] = {}      # proxy id -> the worker that was granted it and has not released it
        self.tokens: set[int] = set()
        self.double_grants: list[str] = []
        self.failures: list[str] = []         # a worker's own assertion, raised in its thread
        self.calls: list[tuple[str, str, float, float, str | None]] = []  # worker, op, began, ended, error
        database.run("INSERT INTO proxies (address) SELECT 'http://10.1.0.' || n || ':3128' FROM generate_series(1, %s) n",
                     (pool_size,))
        self.threads = [threading.Thread(target=self.guarded, args=(self.api_worker, f"c1_{n}"))
                        for n in range(1, api_workers + 1)]
        self.threads += [threading.Thread(target=self.guarded, args=(self.legacy_worker, f"c2_{n}"))
                         for n in range(1, legacy_workers + 1)]

    def guarded(self, work, worker: str) -> None:
        try:
            work(worker)
        except BaseException as failure:
            self.failures.append(f"{worker}: {failure!r}")
            self.stop.set()

    def call(self, worker: str, op: str, conn, query: str, params) -> tuple | None:
        began = time.monotonic()
        try:
            cursor = conn.execute(query, params)
            row = cursor.fetchone() if cursor.description else cursor.rowcount
            error = None
        except psycopg.Error as failure:
            row, error = None, f"{type(failure).__name__} {failure.sqlstate}: {str(failure).splitlines()[0]}"
        with self.guard:
            self.calls.append((worker, op, began, time.monotonic(), error))
        return row

    def granted(self, worker: str, proxy_id: int, token: int | None) -> None:
        with self.guard:
            if proxy_id in self.holders:
                self.double_grants.append(f"proxy {proxy_id} granted to {worker} while {self.holders[proxy_id]} held it")
            if token is not None:
                if token in self.tokens:
                    self.double_grants.append(f"token {token} granted twice")
                self.tokens.add(token)
            self.holders[proxy_id] = worker

    def releasing(self, proxy_id: int) -> None:
        with self.guard:  # before the release commits: from then on another worker may be granted it
            del self.holders[proxy_id]

    def api_worker(self, worker: str) -> None:
        with self.database.connect() as conn:
            conn.execute("SET statement_timeout = '60s'")
            task = conn.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                                "VALUES ('processing', %s, now()) RETURNING id", (worker,)).fetchone()[0]
            while not self.stop.is_set():
                grant = self.call(worker, "acquire_proxy", conn, "SELECT * FROM acquire_proxy(%s)", (worker,))
                if not grant:
                    continue
                proxy_id, _, token, _ = grant
                self.granted(worker, proxy_id, token)
                renewed = self.call(worker, "renew_proxy_lease", conn, "SELECT renew_proxy_lease(%s, %s)",
                                    (proxy_id, token))
                assert renewed is None or renewed[0] is not None, f"{worker} lost proxy {proxy_id} on renewal"
                self.call(worker, "heartbeat", conn, "UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() "
                                                     "WHERE id = %s", (task,))
                self.releasing(proxy_id)
                released = self.call(worker, "release_proxy", conn, "SELECT release_proxy(%s, %s)", (proxy_id, token))
                assert released is None or released[0] is True, f"{worker} could not release proxy {proxy_id}"

    def legacy_worker(self, worker: str) -> None:
        """docs/install.md, 'What the fleet's code must respect': a take of free proxies only, a release of its own."""
        with self.database.connect() as conn:
            conn.execute("SET statement_timeout = '60s'")
            while not self.stop.is_set():
                taken = self.call(worker, "legacy take", conn,
                                  "UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = ("
                                  " SELECT id FROM proxies WHERE NOT is_in_use AND NOT is_blocked"
                                  " ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED) AND NOT is_in_use RETURNING id",
                                  (worker,))
                if not taken:
                    continue
                self.granted(worker, taken[0], None)
                self.releasing(taken[0])
                released = self.call(worker, "legacy release", conn, "UPDATE proxies SET is_in_use = false, "
                                     "worker_id = NULL WHERE id = %s AND worker_id = %s", (taken[0], worker))
                assert released in (None, 1), f"{worker} did not release proxy {taken[0]}"

    def __enter__(self) -> "Fleet":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self.threads)

    def during(self, began: float, ended: float) -> list[tuple]:
        return [call for call in self.calls if call[3] >= began and call[2] <= ended]

    def longest_calls(self, began: float, ended: float, n: int = 3) -> list[str]:
        calls = sorted(self.during(began, ended), key=lambda call: call[3] - call[2], reverse=True)[:n]
        return [f"{op} {ended_at - began_at:.3f}s" for _, op, began_at, ended_at, _ in calls]

    def longest_stall(self, began: float, ended: float) -> tuple[float, str]:
        """The longest a worker went without a call completing, inside [began, ended]."""
        worst = (0.0, "")
        for worker in {call[0] for call in self.calls}:
            ends = sorted(call[3] for call in self.calls if call[0] == worker)
            marks = [began] + [t for t in ends if began < t < ended] + [min(ended, max(ends))]
            for a, b in zip(marks, marks[1:]):
                worst = max(worst, (b - a, worker))
        return worst


def test_workers_keep_acquiring_and_releasing_while_the_lease_revisions_go_up_down_and_up(fresh_database):
    database = fresh_database()
    database.upgrade(LEASE_API)
    fleet = Fleet(database, pool_size=12, api_workers=4, legacy_workers=2)
    steps = []
    with fleet:
        time.sleep(1.0)
        began = time.monotonic()
        for verb, target in (("upgrade", "head"), ("downgrade", LEASE_API), ("upgrade", "head"),
                             ("downgrade", LEASE_API), ("upgrade", "head")):
            step_began = time.monotonic()
            # Six workers with no pause between calls leave few moments when all four tables are free:
            # a step may need more than the default 5 s to find one (docs/install.md, 'Options'). Each attempt still holds
            # the fleet up for about 200 ms at most: the stall bound below checks it, with room for a
            # loaded machine.
            getattr(database, verb)(target, lock_timeout="30s")
            steps.append((f"{verb} {target}", time.monotonic() - step_began))
        ended = time.monotonic()
        time.sleep(0.5)

    during = fleet.during(began, ended)
    errors = sorted({f"{op}: {error}" for _, op, _, _, error in fleet.calls if error})
    stall, stalled_worker = fleet.longest_stall(began, ended)
    per_second = [sum(1 for call in during if int(call[3] - began) == second and not call[4])
                  for second in range(int(ended - began) + 1)]
    print(f"\nmigrations: {', '.join(f'{name} {took:.2f}s' for name, took in steps)}; "
          f"{len(during)} worker calls meanwhile, {len(fleet.calls)} in all; completed per second: {per_second}; "
          f"longest stall {stall:.3f}s ({stalled_worker}); longest calls: {fleet.longest_calls(began, ended)}; "
          f"errors: {errors or 'none'}")

    assert fleet.failures == []
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert errors == []
    assert fleet.double_grants == []
    assert stall < 2.0
    assert database.one(POOL_FIGURES) == (12, 0, 0, 12)
    assert database.one("SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'proxies'::regclass")
