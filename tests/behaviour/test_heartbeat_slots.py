"""Heartbeats in renewal slots (0019_heartbeat_slots): only the first heartbeat of a task in each slot of a
tenth of lease_duration runs the renewal trigger; every other one is its own UPDATE and nothing more."""

import threading

import psycopg
import pytest

from tests.helpers import wait_until

RENEWAL = "tg_tasks__renew_proxy_lease_on_heartbeat"


@pytest.fixture
def worker(db):
    """c0ffee_1 holds proxy 1 and task 1 (in processing); its lease is due for renewal."""
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 3) n")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    db.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c0ffee_1', now())")
    db.run("UPDATE proxies SET leased_until = now() + interval '10 seconds' WHERE id = 1")
    return db


def lease_left(db) -> float:
    return db.one("SELECT extract(epoch FROM leased_until - now()) FROM proxies WHERE id = 1")


def slot_of(db, table: str = "catalog_tasks") -> str:
    """The renewal slot written into the table's heartbeat trigger, as PostgreSQL prints it."""
    return db.one("SELECT substring(pg_get_triggerdef(oid) from 'date_bin\\(''([^'']+)''') FROM pg_trigger "
                  "WHERE tgname = 'renew_proxy_lease_on_heartbeat' AND tgrelid = %s::regclass", (table,))


def renewal_calls(conn: psycopg.Connection, heartbeats: list[str]) -> int:
    """How many times the renewal trigger ran for these heartbeats, in one transaction, rolled back."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL track_functions = 'pl'")
        for heartbeat in heartbeats:
            conn.execute(heartbeat)
        return conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = %s",
                            (RENEWAL,)).fetchone()[0]


def test_a_heartbeat_in_the_slot_of_the_last_one_runs_nothing_though_the_lease_is_due(worker):
    worker.run("UPDATE catalog_tasks SET heartbeat_at = date_bin('30 seconds', now(), '2001-01-01') WHERE id = 1")
    same_slot = ["UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '1 second' WHERE id = 1"] * 20
    with worker.connect() as conn:
        assert renewal_calls(conn, same_slot) == 0
        assert renewal_calls(conn, ["UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '30 seconds' "
                                    "WHERE id = 1"]) == 1
    worker.run(same_slot[0])
    assert lease_left(worker) < 11  # due (under nine tenths left), and not renewed


def test_the_first_heartbeat_of_the_next_slot_renews_from_the_database_clock(worker):
    worker.run("UPDATE catalog_tasks SET heartbeat_at = date_bin('30 seconds', now(), '2001-01-01') WHERE id = 1")
    worker.run("UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '29.999 seconds' WHERE id = 1")
    assert lease_left(worker) < 11
    worker.run("UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '0.001 seconds' WHERE id = 1")
    assert lease_left(worker) == pytest.approx(300, abs=2)


def test_a_worker_beating_every_second_is_renewed_once_per_slot(worker):
    """Twenty seconds of a worker's heartbeats, 1 s apart on its own clock, played back at once: with a
    30-second lease the slot is 3 s, so about one heartbeat in three runs the renewal trigger."""
    worker.run("UPDATE proxy_lease_settings SET lease_duration = '30 seconds', orphan_grace = '5 seconds'")
    worker.run("UPDATE proxies SET leased_until = now() + interval '2 seconds' WHERE id = 1")
    beat = "UPDATE catalog_tasks SET heartbeat_at = heartbeat_at + interval '1 second' WHERE id = 1"
    with worker.connect() as conn:
        assert renewal_calls(conn, [beat] * 20) in (6, 7)
    worker.run(beat)
    worker.run(beat)
    worker.run(beat)
    assert lease_left(worker) == pytest.approx(30, abs=2)


def test_setting_lease_duration_moves_the_slot(worker):
    def slots() -> list[str]:
        return [slot_of(worker, "catalog_tasks"), slot_of(worker, "object_tasks")]

    assert slots() == ["00:00:30", "00:00:30"]  # catalog_tasks, object_tasks: a tenth of the default 5 minutes
    worker.run("UPDATE proxy_lease_settings SET lease_duration = '90 seconds'")
    assert slots() == ["00:00:09", "00:00:09"]
    assert "slot of 00:00:09" in worker.one(
        "SELECT obj_description(oid, 'pg_trigger') FROM pg_trigger WHERE tgname = 'renew_proxy_lease_on_heartbeat' "
        "AND tgrelid = 'object_tasks'::regclass")
    # A lease of months still gives a slot date_bin takes (in seconds: 3 days), and heartbeats keep working.
    worker.run("UPDATE proxy_lease_settings SET lease_duration = '1 month', longest_lease = '1 month'")
    assert slots() == ["72:00:00", "72:00:00"]
    worker.run("UPDATE catalog_tasks SET heartbeat_at = now() + interval '4 days' WHERE id = 1")
    assert lease_left(worker) > 29 * 86400


@pytest.mark.parametrize("value", ["NULL", "'infinity'", "'-infinity'", "'4713-01-01 BC'", "'294276-12-31'"])
def test_any_heartbeat_value_is_written_and_renews_only_when_it_moves_forward(worker, value):
    worker.run(f"UPDATE catalog_tasks SET heartbeat_at = {value} WHERE id = 1")
    assert worker.one("SELECT heartbeat_at IS NOT DISTINCT FROM %s::timestamptz FROM catalog_tasks WHERE id = 1"
                      % value) is True
    renewed = value in ("'infinity'", "'294276-12-31'")
    assert (lease_left(worker) > 200) is renewed


def test_a_new_lease_duration_waits_at_most_5_s_for_a_fleet_transaction_then_changes_nothing(worker):
    """A fleet transaction has written a task and not committed; the settings change waits (seen in
    pg_locks), gives up after 5 s with 55P03 naming the table, and leaves the slot and the setting as they were."""
    with worker.connect(autocommit=False) as fleet:
        fleet.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = 1")
        failure: list[BaseException] = []

        def change() -> None:
            try:
                worker.run("UPDATE proxy_lease_settings SET lease_duration = '10 minutes'")
            except psycopg.Error as error:
                failure.append(error)

        changer = threading.Thread(target=change)
        changer.start()
        wait_until(lambda: worker.one(
            "SELECT count(*) FROM pg_locks WHERE relation = 'catalog_tasks'::regclass AND NOT granted "
            "AND mode = 'ShareRowExclusiveLock'") == 1, "the settings change waiting for catalog_tasks")
        changer.join(timeout=15)
        fleet.rollback()
    assert not changer.is_alive()
    error = failure[0]
    assert error.sqlstate == "55P03"
    assert error.diag.message_primary == ("could not give the heartbeat triggers the renewal slot of lease_duration "
                                          "00:10:00: catalog_tasks stayed locked for 5 s")
    assert error.diag.message_hint.startswith("A long transaction is writing catalog_tasks; see pg_stat_activity")
    assert worker.one("SELECT lease_duration FROM proxy_lease_settings").total_seconds() == 300
    assert slot_of(worker) == "00:00:30"


def test_a_new_lease_duration_waits_for_a_fleet_transaction_that_commits_in_time(worker):
    with worker.connect(autocommit=False) as fleet:
        fleet.execute("UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = 1")
        changer = threading.Thread(target=worker.run,
                                   args=("UPDATE proxy_lease_settings SET lease_duration = '10 minutes'",))
        changer.start()
        wait_until(lambda: worker.one(
            "SELECT count(*) FROM pg_locks WHERE relation = 'catalog_tasks'::regclass AND NOT granted") == 1,
            "the settings change waiting for catalog_tasks")
        fleet.commit()
        changer.join(timeout=10)
    assert worker.one("SELECT lease_duration FROM proxy_lease_settings").total_seconds() == 600
    assert slot_of(worker) == "00:01:00"


def test_the_slot_placing_function_is_not_for_callers(worker):
    with worker.connect() as conn:
        conn.execute("SET ROLE proxy_leases_operator")  # the settings owner places it, by setting lease_duration
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT place_heartbeat_triggers()")
