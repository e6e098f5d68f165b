"""An upgrade behind a long transaction fails fast and leaves the fleet's tables usable meanwhile."""

import threading
import time

import pytest

from tests.helpers import HEAD, Database


def wait_for_lock_wait(database: Database, query_prefix: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not database.one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND query LIKE %s", ("%" + query_prefix + "%",)):
        assert time.monotonic() < deadline, "the upgrade never waited for a lock"
        time.sleep(0.02)


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
        wait_for_lock_wait(database, "LOCK TABLE public.catalog_tasks")
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
    assert database.one("SELECT version_num FROM alembic_version") == "0002_partial_indexes"
    assert database.one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'proxies'::regclass "
                        "AND attname = 'leased_until'") == 0

    database.upgrade()
    assert database.one("SELECT version_num FROM alembic_version") == HEAD


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
        wait_for_lock_wait(database, "LOCK TABLE public.catalog_tasks")
        worker.execute("SET lock_timeout = '2s'")
        worker.execute("UPDATE catalog_tasks SET status = 'done' WHERE worker_id = 'w_1'")
        worker.commit()
        migration.join(timeout=60)
    assert outcome == [None]
    assert database.one("SELECT version_num FROM alembic_version") == HEAD


def test_the_concurrent_index_build_outwaits_a_long_transaction_without_blocking_writes(fresh_database):
    database = fresh_database()
    database.upgrade("0001_fleet_schema")
    database.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', 'w_1'), ('processing', 'w_2')")
    with database.connect(autocommit=False) as long_transaction:
        long_transaction.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE worker_id = 'w_1'")
        migration = threading.Thread(target=database.upgrade, kwargs={"target": "0002_partial_indexes",
                                                                      "lock_timeout": "1s"})
        migration.start()
        wait_for_lock_wait(database, "CREATE INDEX CONCURRENTLY")
        time.sleep(1.5)  # longer than lock_timeout: CONCURRENTLY is exempt, since it blocks nobody
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '500ms'")
            worker.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE worker_id = 'w_2'")
        long_transaction.commit()
        migration.join(timeout=30)
    assert database.one("SELECT version_num FROM alembic_version") == "0002_partial_indexes"
    assert database.one("SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text LIKE '%worker_idx'")


def test_downgrading_the_baseline_refuses_to_drop_created_tables_that_hold_rows(fresh_database):
    database = fresh_database()
    database.upgrade()
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    with pytest.raises(Exception, match="public.proxies holds rows") as failure:
        database.downgrade("base")
    assert failure.value.orig.diag.message_hint.startswith("To keep the table")
    assert database.one("SELECT version_num FROM alembic_version") == "0001_fleet_schema"
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
        wait_for_lock_wait(database, "proxy_lease_settings too, which this revision alters")  # 0006_lease_api_locks.sql
        with database.connect() as worker:
            worker.execute("SET statement_timeout = '1s'")
            for _ in range(5):  # heartbeats, which renew the lease, keep going through the attempts
                worker.execute("UPDATE catalog_tasks SET heartbeat_at = clock_timestamp()")
                time.sleep(0.1)
        migration.join(timeout=30)
        dashboard.rollback()

    assert len(outcome) == 1 and "lock_timeout=3s" in outcome[0] and "changed nothing" in outcome[0]
    assert database.one("SELECT version_num FROM alembic_version") == "0005_sweep_schedule"
    database.upgrade()
    assert database.one("SELECT version_num FROM alembic_version") == HEAD
