"""release_container_proxies(): a container starting again takes back exactly its own proxies."""

import psycopg
import pytest

WORKERS = ["8b4f59aa_1", "8b4f59aa_2", "8b4f59aa_15", "8b4f59aa1_1", "8b4f59aab_1", "x8b4f59aa_1", "b77514be_1"]


@pytest.fixture
def fleet(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 10) n")
    for proxy_id, worker in enumerate(WORKERS, start=1):
        db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = %s", (worker, proxy_id))
    db.run("UPDATE proxies SET is_blocked = true WHERE worker_id = '8b4f59aa_2'")
    return db


def holders(db):
    return [row[0] for row in db.all("SELECT worker_id FROM proxies WHERE is_in_use ORDER BY id")]


def test_frees_every_proxy_of_the_container_and_nothing_else(fleet):
    assert fleet.one("SELECT release_container_proxies('8b4f59aa')") == 3
    # The report's LIKE '8b4f59aa_%' would also have freed 8b4f59aa1_1 and 8b4f59aab_1.
    assert holders(fleet) == ["8b4f59aa1_1", "8b4f59aab_1", "x8b4f59aa_1", "b77514be_1"]
    assert fleet.one("SELECT is_blocked FROM proxies WHERE id = 2") is True


def test_a_container_with_nothing_held_frees_nothing(fleet):
    assert fleet.one("SELECT release_container_proxies('93816237')") == 0
    assert len(holders(fleet)) == len(WORKERS)


def test_called_with_the_parameter_name(fleet):
    assert fleet.one("SELECT release_container_proxies(container_id => '8b4f59aa1')") == 1


@pytest.mark.parametrize("bad", [
    None, "", " ", "8b4f59aa_", "8b4f59aa_%", "8b4f59aa%", "%", "_", "8b4f_59aa", "8b4f59aa ", " 8b4f59aa",
    "8b4f'59aa", "8b4f\\59aa", "-8b4f59aa", "8b4f59aa\n", "a" * 129, "a" * 100_000, "8b4f59aa;DROP",
    "контейнер",
])
def test_bad_container_ids_raise_22023_and_free_nothing(fleet, bad):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as failure:
        fleet.one("SELECT release_container_proxies(%s)", (bad,))
    assert failure.value.sqlstate == "22023"
    assert failure.value.diag.message_hint
    assert len(holders(fleet)) == len(WORKERS)


@pytest.mark.parametrize("good", ["ffffffff", "a" * 128, "web-01.eu", "c0:ff:ee", "X"])
def test_the_accepted_shapes(fleet, good):
    assert fleet.one("SELECT release_container_proxies(%s)", (good,)) == 0


def test_a_row_another_transaction_has_locked_is_skipped_not_waited_for(fleet):
    with fleet.connect(autocommit=False) as worker, fleet.connect() as cleanup:
        worker.execute("UPDATE proxies SET is_in_use = false WHERE worker_id = '8b4f59aa_1'")
        worker.execute("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
        cleanup.execute("SET lock_timeout = '100ms'")  # waiting would be an error, not a slow test
        assert cleanup.execute("SELECT release_container_proxies('8b4f59aa')").fetchone()[0] == 2
        worker.commit()
    assert fleet.one("SELECT worker_id FROM proxies WHERE id = 1") == "c0ffee_1"


def test_no_deadlock_with_the_heartbeat_manager_requeueing_the_same_container(db):
    """The reviewer's case: the requeue frees cc_2's proxy, then cc_1's, while the container restarts."""
    db.run("INSERT INTO proxies (address) VALUES ('a'), ('b')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'cc_' || id")
    db.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', 'cc_1'), ('processing', 'cc_2')")
    with db.connect(autocommit=False) as manager, db.connect() as restart:
        manager.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE worker_id = 'cc_2'")
        restart.execute("SET lock_timeout = '2s'")
        assert restart.execute("SELECT release_container_proxies('cc')").fetchone()[0] == 1
        manager.execute("SET lock_timeout = '2s'")
        manager.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE worker_id = 'cc_1'")
        manager.commit()
    assert db.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0
