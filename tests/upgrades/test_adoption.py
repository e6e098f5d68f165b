"""The upgrade on the fleet's live database: adopt its tables, change no row, free the stuck proxies."""

import psycopg
import pytest

from tests.helpers import past_the_grace, sweep
from tools.harness import load_legacy_incident, pool_figures

TABLES = ("proxies", "catalog_tasks", "object_tasks")
# proxy_pool_by_container on the incident (see demo/incident_state.sql): container, workers, proxies
# held, tasks in processing, proxies stuck. b77514be_16 finished its task but kept its proxy.
INCIDENT_CONTAINERS_BEFORE = [
    ("8b4f59aa", 15, 15, 0, 15),
    ("93816237", 15, 15, 15, 0),
    ("b77514be", 16, 16, 15, 1),
    ("e1bf8c63", 14, 14, 14, 0),
]


def snapshot(database):
    return {table: database.all(f"SELECT * FROM {table} ORDER BY id") for table in TABLES}


def table_oids(database):
    return database.all("SELECT relname, oid FROM pg_class WHERE relname = ANY(%s) ORDER BY 1", (list(TABLES),))


def test_baseline_adopts_the_live_tables_without_recreating_or_changing_anything(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    rows, oids = snapshot(database), table_oids(database)

    database.upgrade("0001_fleet_schema")

    assert table_oids(database) == oids
    assert snapshot(database) == rows
    assert database.all("SELECT table_name, created FROM proxy_leases_adopted_tables ORDER BY 1") == [
        ("catalog_tasks", False), ("object_tasks", False), ("proxies", False)]


def test_the_incident_is_resolved_by_one_sweep_after_the_upgrade(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    assert pool_figures(database) == (100, 60, 27, 13)

    database.upgrade()

    # Proxies held at upgrade time get a lease: live workers are not cut off...
    assert database.one("SELECT count(*) FROM proxies WHERE is_in_use AND leased_until > now()") == 60
    # ...and within the grace after that grant not even the orphans are taken.
    assert sweep(database) == 0
    assert pool_figures(database) == (100, 60, 27, 13)
    assert database.one("SELECT * FROM proxy_pool_status") == (100, 60, 27, 13, 0)

    past_the_grace(database)
    # The report's statistics block, before: the crashed container 8b4f59aa holds 15 proxies and no task.
    assert database.one("SELECT * FROM proxy_pool_status") == (100, 60, 27, 13, 16)
    assert database.all("SELECT container_id, workers, proxies_held, tasks_processing, proxies_stuck "
                        "FROM proxy_pool_by_container ORDER BY 1") == INCIDENT_CONTAINERS_BEFORE
    assert sweep(database) == 16
    assert pool_figures(database) == (100, 44, 27, 29)
    assert database.one("SELECT * FROM proxy_pool_status") == (100, 44, 27, 29, 0)
    holders = {row[0].split("_")[0] for row in database.all("SELECT worker_id FROM proxies WHERE is_in_use")}
    assert holders == {"b77514be", "93816237", "e1bf8c63"}
    assert database.one("SELECT count(*) FROM proxies WHERE worker_id LIKE '8b4f59aa%' OR worker_id = 'b77514be_16'") == 0


def test_downgrade_to_base_keeps_adopted_tables_and_their_data_and_upgrade_works_again(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    database.upgrade()
    database.downgrade("base")

    assert database.one("SELECT count(*) FROM proxies") == 100
    assert database.one("SELECT count(*) FROM catalog_tasks") > 300
    assert database.one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'proxies'::regclass "
                        "AND attname IN ('leased_at', 'leased_until') AND NOT attisdropped") == 0
    assert database.one("SELECT to_regclass('proxy_leases_adopted_tables')") is None

    database.upgrade()
    past_the_grace(database)
    assert database.one("SELECT release_stuck_proxies()") == 16
    assert pool_figures(database) == (100, 44, 27, 29)


def test_only_the_missing_tables_are_created_and_only_they_are_dropped(fresh_database):
    database = fresh_database()
    database.run("CREATE TABLE proxies (id serial PRIMARY KEY, is_in_use boolean, worker_id text, is_blocked boolean);"
                 "INSERT INTO proxies (is_in_use, is_blocked) VALUES (false, false)")
    database.upgrade()
    assert database.all("SELECT table_name, created FROM proxy_leases_adopted_tables ORDER BY 1") == [
        ("catalog_tasks", True), ("object_tasks", True), ("proxies", False)]
    database.downgrade("base")
    assert database.one("SELECT to_regclass('catalog_tasks')") is None
    assert database.one("SELECT count(*) FROM proxies") == 1


@pytest.mark.parametrize("table, column", [
    ("proxies", "is_blocked"), ("proxies", "worker_id"), ("catalog_tasks", "heartbeat_at"), ("object_tasks", "status"),
])
def test_a_missing_contract_column_stops_the_upgrade_and_names_it(fresh_database, table, column):
    database = fresh_database()
    load_legacy_incident(database)
    database.run(f"ALTER TABLE {table} DROP COLUMN {column}")

    with pytest.raises(Exception) as failure:
        database.upgrade()

    cause = failure.value.orig if hasattr(failure.value, "orig") else failure.value
    assert isinstance(cause, psycopg.errors.UndefinedColumn)
    assert f"table public.{table} lacks the contract column(s) {column}" in str(cause)
    assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None
    assert database.one("SELECT to_regclass('proxy_leases_adopted_tables')") is None


def test_a_contract_column_of_the_wrong_type_stops_the_upgrade(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    database.run("ALTER TABLE proxies ALTER COLUMN is_in_use DROP DEFAULT, ALTER COLUMN is_in_use TYPE integer USING is_in_use::integer")
    with pytest.raises(Exception) as failure:
        database.upgrade()
    assert isinstance(failure.value.orig, psycopg.errors.DatatypeMismatch)
    assert "is_in_use is integer, expected boolean" in str(failure.value.orig)
