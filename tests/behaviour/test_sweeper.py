"""release_stuck_proxies(): what it frees, what it must never free, and what it costs."""

import json

import pytest

from tests.helpers import executed_plans, past_the_grace, plan_nodes, scans, sweep


@pytest.fixture
def fleet(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 10) n")
    return db


def take(db, proxy_id, worker, task_table=None):
    db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = %s", (worker, proxy_id))
    if task_table:
        db.run(f"INSERT INTO {task_table} (status, worker_id, heartbeat_at) VALUES ('processing', %s, now())",
               (worker,))


def held(db):
    return [row[0] for row in db.all("SELECT id FROM proxies WHERE is_in_use ORDER BY id")]


def test_a_sweep_with_nothing_stuck_frees_nothing(fleet):
    take(fleet, 1, "b77514be_1", "catalog_tasks")
    take(fleet, 2, "b77514be_2", "object_tasks")
    past_the_grace(fleet)
    assert fleet.all("SELECT * FROM stuck_proxies") == []
    assert sweep(fleet) == 0
    assert held(fleet) == [1, 2]


def test_an_expired_lease_is_freed_even_while_its_task_is_in_processing(fleet):
    take(fleet, 1, "b77514be_1", "catalog_tasks")
    fleet.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = 1")
    assert fleet.all("SELECT id, reason FROM stuck_proxies") == [(1, "lease_expired")]
    assert sweep(fleet) == 1
    assert held(fleet) == []


def test_an_orphan_is_freed_only_once_past_the_grace(fleet):
    take(fleet, 1, "8b4f59aa_1")          # taken, task not (yet) in processing
    assert sweep(fleet) == 0
    past_the_grace(fleet)
    assert fleet.all("SELECT id, reason FROM stuck_proxies") == [(1, "orphaned")]
    assert sweep(fleet) == 1


def test_the_grace_is_the_operators_setting(fleet):
    fleet.run("UPDATE proxy_lease_settings SET orphan_grace = '0 seconds'")
    take(fleet, 1, "8b4f59aa_1")
    assert sweep(fleet) == 1


def test_null_worker_ids_in_the_task_tables_do_not_hide_orphans(fleet):
    """The report's NOT IN (SELECT worker_id ...) frees nothing once a NULL is in the list."""
    fleet.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', NULL), ('done', NULL)")
    fleet.run("INSERT INTO object_tasks (status, worker_id) VALUES ('processing', NULL)")
    take(fleet, 1, "8b4f59aa_1")
    take(fleet, 2, "b77514be_1", "object_tasks")
    past_the_grace(fleet)
    naive = fleet.one("SELECT count(*) FROM proxies WHERE is_in_use AND worker_id NOT IN "
                      "(SELECT worker_id FROM catalog_tasks WHERE status = 'processing' "
                      " UNION SELECT worker_id FROM object_tasks WHERE status = 'processing')")
    assert naive == 0
    assert sweep(fleet) == 1
    assert held(fleet) == [2]


def test_the_view_and_worker_has_processing_task_agree_on_every_held_proxy(fleet):
    """The orphan rule is written twice: set-based in stuck_proxies, per worker in the function the
    release trigger asks. Past the grace, a held proxy is orphaned exactly when the function says its
    worker has no task in processing."""
    fleet.run("INSERT INTO proxies (address) SELECT 'http://more' || n FROM generate_series(1, 10) n")
    tasks = {
        "c1_1": [("catalog_tasks", "processing")],
        "c1_2": [("object_tasks", "processing")],
        "c1_3": [("catalog_tasks", "processing"), ("object_tasks", "processing")],
        "c1_4": [("catalog_tasks", "done"), ("object_tasks", "failed")],
        "c1_5": [("catalog_tasks", "pending"), ("object_tasks", "pending")],
        "c1_6": [],
        "C1_1": [],                         # another worker than c1_1: ids compare exactly
        "c1_1 ": [],
        "c1_7": [("object_tasks", "done"), ("object_tasks", "processing")],
        "c1_8": [("catalog_tasks", "processing")],   # handed to another worker below
    }
    for proxy_id, (worker, rows) in enumerate(tasks.items(), start=1):
        take(fleet, proxy_id, worker)
        for table, status in rows:
            fleet.run(f"INSERT INTO {table} (status, worker_id, heartbeat_at) VALUES (%s, %s, now())",
                      (status, worker))
    fleet.run("UPDATE catalog_tasks SET worker_id = 'c2_1' WHERE worker_id = 'c1_8'")   # c1_8 freed, strike
    take(fleet, 9 + 10, "c1_8")                                                         # c1_8 holds again
    # Tasks in processing with no worker must hide no orphan (the NOT IN pitfall).
    fleet.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('processing', NULL)")
    fleet.run("INSERT INTO object_tasks (status, worker_id) VALUES ('processing', NULL)")
    past_the_grace(fleet)

    by_function = dict(fleet.all("SELECT p.id, NOT worker_has_processing_task(p.worker_id) FROM proxies p"
                                 " WHERE p.is_in_use"))
    by_view = {row[0] for row in fleet.all("SELECT id FROM stuck_proxies WHERE reason = 'orphaned'")}
    assert fleet.all("SELECT reason FROM stuck_proxies WHERE reason <> 'orphaned'") == []
    assert by_view == {proxy_id for proxy_id, orphaned in by_function.items() if orphaned}
    assert 0 < len(by_view) < len(by_function)
    assert sweep(fleet) == len(by_view)


def test_the_view_calls_no_function_per_held_proxy(db):
    """worker_has_processing_task cannot be inlined (it runs as its owner): stuck_proxies must not call it."""
    assert db.all("SELECT d.refobjid::regprocedure::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
                  " WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class = 'stuck_proxies'::regclass"
                  "   AND d.refclassid = 'pg_proc'::regclass") == []


def test_a_freed_blocked_proxy_stays_blocked(fleet):
    take(fleet, 1, "8b4f59aa_1")
    fleet.run("UPDATE proxies SET is_blocked = true, leased_until = now() - interval '1 s' WHERE id = 1")
    assert sweep(fleet) == 1
    assert fleet.one("SELECT (is_in_use, is_blocked) FROM proxies WHERE id = 1") == ("f", "t")


def test_half_held_rows_from_before_the_rule_are_freed(fresh_database):
    """Between revisions 0003 (rule NOT VALID) and 0004, legacy rows may still break the rule."""
    database = fresh_database()
    database.upgrade("0002_partial_indexes")
    database.run("INSERT INTO proxies (address, is_in_use, worker_id) VALUES "
                 "('a', true, NULL), ('b', false, 'dead_1'), ('c', true, 'dead_2'), ('d', false, NULL)")
    database.upgrade("0003_lease")
    assert sorted(database.all("SELECT reason FROM stuck_proxies")) == [("inconsistent",)] * 3
    assert database.one("SELECT release_stuck_proxies()") == 3
    assert database.one("SELECT count(*) FROM proxies WHERE is_in_use OR worker_id IS NOT NULL") == 0
    database.upgrade()


def test_the_backfill_frees_half_held_rows_and_validates_the_rule(fresh_database):
    database = fresh_database()
    database.upgrade("0002_partial_indexes")
    database.run("INSERT INTO proxies (address, is_in_use, worker_id) VALUES "
                 "('a', true, NULL), ('b', false, 'dead_1'), ('c', true, 'live_2'), ('d', false, NULL)")
    database.run("ALTER TABLE proxies ALTER COLUMN is_in_use DROP NOT NULL")
    database.run("INSERT INTO proxies (address, is_in_use) VALUES ('e', NULL)")
    database.upgrade()
    assert database.all("SELECT address, is_in_use, worker_id, leased_until > now() FROM proxies ORDER BY 1") == [
        ("a", False, None, None), ("b", False, None, None), ("c", True, "live_2", True),
        ("d", False, None, None), ("e", False, None, None)]
    assert database.one("SELECT convalidated FROM pg_constraint WHERE conname = 'proxies_lease_consistent'") is True


def sweep_plans(db):
    """What the sweeper returned, and every plan it ran (its UPDATEs first)."""
    result, plans = executed_plans(db, "SELECT release_stuck_proxies()")
    plans.sort(key=lambda plan: plan.get("Operation") != "Update")
    return result[0][0], plans


def test_the_sweep_reads_only_the_partial_indexes_at_scale(fleet):
    """200,000 proxies (1,010 held, 10 stuck) and 1,000,000 tasks: the sweep scans none of the fleet's tables."""
    fleet.run("INSERT INTO proxies (address) SELECT 'http://p' || n FROM generate_series(11, 200000) n")
    fleet.run("INSERT INTO catalog_tasks (status, worker_id) SELECT "
              "(ARRAY['done','failed','pending'])[1 + n % 3], CASE WHEN n % 2 = 0 THEN 'w_' || n END "
              "FROM generate_series(1, 500000) n")
    fleet.run("INSERT INTO object_tasks (status, worker_id) SELECT 'done', NULL FROM generate_series(1, 500000) n")
    fleet.run("UPDATE proxies SET is_in_use = true, worker_id = 'live_' || id WHERE id <= 1000")
    fleet.run("UPDATE proxies SET is_in_use = true, worker_id = 'dead_' || id WHERE id BETWEEN 1001 AND 1010")
    fleet.run("INSERT INTO object_tasks (status, worker_id, heartbeat_at) "
              "SELECT 'processing', 'live_' || n, now() FROM generate_series(1, 1000) n")
    for table in ("proxies", "catalog_tasks", "object_tasks"):
        fleet.run(f"ANALYZE {table}")
    past_the_grace(fleet)
    # Not the sweep's reading: the wake-up trigger's probe for 16 other free proxies (LIMIT 16).
    fleet.run("ALTER TABLE proxies DISABLE TRIGGER announce_proxy_available")

    freed, plans = sweep_plans(fleet)

    assert freed == 10
    read = scans(plans)
    table_scans = {relation for node_type, relation, _ in read if node_type == "Seq Scan"}
    assert table_scans <= {"proxy_lease_settings"}, read
    used = {index for _, _, index in read if index}
    assert {"proxies_held_worker_idx", "proxies_pkey", "catalog_tasks_processing_worker_idx",
            "object_tasks_processing_worker_idx"} <= used, read
    # The UPDATE probes the primary key with the ids it collected: no join over the whole table.
    probe = next(node for node in plan_nodes(plans[0]) if node.get("Index Name") == "proxies_pkey")
    assert probe["Index Cond"].startswith("(id = ANY"), json.dumps(plans[0], indent=1)
