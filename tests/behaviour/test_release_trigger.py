"""The proxy goes back to the pool the moment its worker's task leaves processing."""

import pytest

WORKER = "8b4f59aa_3"


@pytest.fixture
def held(db):
    """Proxy 1 held by WORKER, whose catalog task (returned) is in processing."""
    db.run("INSERT INTO proxies (address, is_blocked) VALUES ('http://10.0.0.1:3128', false), "
           "('http://10.0.0.2:3128', false)")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = 1", (WORKER,))
    db.run("UPDATE proxies SET is_in_use = true, worker_id = 'e1bf8c63_1' WHERE id = 2")
    db.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'e1bf8c63_1', now())")
    return db, db.one("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                      "VALUES ('processing', %s, now()) RETURNING id", (WORKER,))


def holder(db, proxy_id=1):
    return db.one("SELECT worker_id FROM proxies WHERE id = %s", (proxy_id,))


@pytest.mark.parametrize("leave", [
    "UPDATE catalog_tasks SET status = 'done' WHERE id = %s",
    "UPDATE catalog_tasks SET status = 'failed' WHERE id = %s",
    "UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE id = %s",  # the heartbeat manager
    "UPDATE catalog_tasks SET worker_id = NULL WHERE id = %s",
    "UPDATE catalog_tasks SET worker_id = '93816237_1' WHERE id = %s",
    "DELETE FROM catalog_tasks WHERE id = %s",
])
def test_a_task_leaving_processing_frees_its_workers_proxy(held, leave):
    db, task = held
    db.run(leave, (task,))
    assert holder(db) is None
    assert holder(db, 2) == "e1bf8c63_1"


def test_the_proxy_is_freed_in_the_same_transaction_and_not_if_it_rolls_back(held):
    db, task = held
    with db.connect(autocommit=False) as conn:
        conn.execute("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))
        assert conn.execute("SELECT is_in_use FROM proxies WHERE id = 1").fetchone()[0] is False
        conn.rollback()
    assert holder(db) == WORKER


@pytest.mark.parametrize("other_table", ["catalog_tasks", "object_tasks"])
def test_a_worker_with_another_task_in_processing_keeps_its_proxy(held, other_table):
    db, task = held
    db.run(f"INSERT INTO {other_table} (status, worker_id, heartbeat_at) VALUES ('processing', %s, now())",
           (WORKER,))
    db.run("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))
    assert holder(db) == WORKER


def test_object_tasks_release_too(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = 1", (WORKER,))
    db.run("INSERT INTO object_tasks (status, worker_id, heartbeat_at) VALUES ('processing', %s, now())", (WORKER,))
    db.run("UPDATE object_tasks SET status = 'done'")
    assert holder(db) is None


def test_changes_that_do_not_leave_processing_keep_the_proxy(held):
    db, task = held
    db.run("UPDATE catalog_tasks SET heartbeat_at = now(), payload = '{\"page\": 2}' WHERE id = %s", (task,))
    db.run("UPDATE catalog_tasks SET status = 'processing' WHERE id = %s", (task,))
    db.run("INSERT INTO catalog_tasks (status, worker_id) VALUES ('done', %s)", (WORKER,))
    db.run("UPDATE catalog_tasks SET status = 'failed' WHERE status = 'done' AND worker_id = %s", (WORKER,))
    assert holder(db) == WORKER


def test_a_blocked_proxy_is_freed_but_stays_blocked(held):
    db, task = held
    db.run("UPDATE proxies SET is_blocked = true WHERE id = 1")
    db.run("UPDATE catalog_tasks SET status = 'failed' WHERE id = %s", (task,))
    assert db.one("SELECT (is_in_use, is_blocked) FROM proxies WHERE id = 1") == ("f", "t")


def test_one_statement_requeueing_a_whole_container_frees_all_its_proxies(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.1.' || n || ':3128' FROM generate_series(1, 15) n")
    db.run("UPDATE proxies SET is_in_use = true, worker_id = '8b4f59aa_' || id")
    db.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
           "SELECT 'processing', '8b4f59aa_' || n, now() - interval '10 minutes' FROM generate_series(1, 15) n")
    freed_by_heartbeat_manager = db.run(
        "UPDATE catalog_tasks SET status = 'pending', worker_id = NULL "
        "WHERE status = 'processing' AND heartbeat_at < now() - interval '5 minutes'")
    assert freed_by_heartbeat_manager == 15
    assert db.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0


# (the other task of WORKER: table, status, worker) -> does WORKER keep its proxy when task 1 finishes?
OTHER_TASKS = [
    (None, None, None),
    ("catalog_tasks", "processing", WORKER),
    ("object_tasks", "processing", WORKER),
    ("catalog_tasks", "done", WORKER),
    ("object_tasks", "pending", WORKER),
    ("object_tasks", "processing", "8b4f59aa_33"),   # another worker of the same container
    ("catalog_tasks", "processing", None),
]


@pytest.mark.parametrize("table, status, worker", OTHER_TASKS)
def test_the_trigger_and_worker_has_processing_task_agree(held, table, status, worker):
    """Since v6 the trigger writes the rule of worker_has_processing_task out (the function is planned
    again in every transaction that calls it): both must say the same about the worker."""
    db, task = held
    if table:
        db.run(f"INSERT INTO {table} (status, worker_id, heartbeat_at) VALUES (%s, %s, now())", (status, worker))
    db.run("UPDATE catalog_tasks SET status = 'done' WHERE id = %s", (task,))
    still_alive = db.one("SELECT worker_has_processing_task(%s)", (WORKER,))
    assert holder(db) == (WORKER if still_alive else None)
    assert still_alive is (status == "processing" and worker == WORKER)


def test_the_trigger_calls_no_function_to_ask_about_the_worker(db):
    assert "worker_has_processing_task(" not in db.one(
        "SELECT prosrc FROM pg_proc WHERE proname = 'tg_tasks__release_proxy_on_task_exit'")
