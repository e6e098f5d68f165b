"""proxy_lease_settings.record_lease_events: the audit trail can be turned off and on again, for every session."""

import time

import psycopg
import pytest

from tests.helpers import acquire

AUDIT_TRIGGERS = ("record_lease_events", "record_lease_events_on_insert", "record_lease_events_on_delete")


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 3) n")
    return db


def trigger_states(database):
    return dict(database.all("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'proxies'::regclass "
                             "AND tgname LIKE 'record_lease_events%'"))


def a_grant_and_its_release(database, worker):
    proxy_id, _, token, _ = acquire(database, worker)
    assert database.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
    return proxy_id


def events_of(database, worker):
    return database.all("SELECT event, reason FROM proxy_lease_events WHERE worker_id = %s ORDER BY id", (worker,))


def test_turned_off_no_event_is_written_and_turned_on_again_they_are(pool):
    assert pool.one("SELECT record_lease_events FROM proxy_lease_settings") is True
    pool.run("UPDATE proxy_lease_settings SET record_lease_events = false")
    assert trigger_states(pool) == {name: "D" for name in AUDIT_TRIGGERS} | {"record_lease_events_on_truncate": "O"}
    a_grant_and_its_release(pool, "c0ffee01_1")
    assert events_of(pool, "c0ffee01_1") == []

    pool.run("UPDATE proxy_lease_settings SET record_lease_events = true")
    assert set(trigger_states(pool).values()) == {"O"}
    a_grant_and_its_release(pool, "c0ffee01_2")
    assert events_of(pool, "c0ffee01_2") == [("granted", "acquired"), ("released", "released_by_worker")]


def test_a_switch_rolled_back_switches_nothing(pool):
    with pool.connect(autocommit=False) as conn:
        conn.execute("UPDATE proxy_lease_settings SET record_lease_events = false")
        conn.rollback()
    assert set(trigger_states(pool).values()) == {"O"}
    a_grant_and_its_release(pool, "c0ffee01_3")
    assert len(events_of(pool, "c0ffee01_3")) == 2


def test_a_switch_that_cannot_lock_proxies_fails_in_5_s_with_55p03_and_changes_nothing(pool):
    with pool.connect(autocommit=False) as writer:
        writer.execute("UPDATE proxies SET address = address WHERE id = (SELECT min(id) FROM proxies)")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable) as refused:
            pool.run("UPDATE proxy_lease_settings SET record_lease_events = false")
        waited = time.monotonic() - started
        writer.rollback()
    assert 4.5 < waited < 15
    assert "proxies stayed locked for 5 s" in str(refused.value)
    assert "pg_stat_activity" in refused.value.diag.message_hint
    assert pool.one("SELECT record_lease_events FROM proxy_lease_settings") is True
    assert set(trigger_states(pool).values()) == {"O"}


def test_only_roles_that_may_change_the_settings_can_switch_it(pool):
    pool.run("CREATE ROLE fleet_worker_rec LOGIN")
    pool.run("GRANT SELECT, UPDATE ON proxies TO fleet_worker_rec")
    try:
        with psycopg.connect(pool.url, user="fleet_worker_rec", autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE proxy_lease_settings SET record_lease_events = false")
        assert set(trigger_states(pool).values()) == {"O"}
    finally:
        pool.run("REVOKE ALL ON proxies FROM fleet_worker_rec")
        pool.run("DROP ROLE fleet_worker_rec")


def test_the_downgrade_turns_the_trail_back_on(fresh_database):
    database = fresh_database()
    database.upgrade(cron="off")
    database.run("UPDATE proxy_lease_settings SET record_lease_events = false")
    database.downgrade("0012_stuck_rule_set_based", cron="off")
    assert set(trigger_states(database).values()) == {"O"}
