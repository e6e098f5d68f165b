"""The lease on each proxy row: filled in for the legacy UPDATE path, renewed by task heartbeats."""

import psycopg
import pytest


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    return db


def lease_of(db, proxy_id):
    return db.one("SELECT is_in_use, worker_id, leased_at IS NOT NULL, leased_until - leased_at "
                  "FROM proxies WHERE id = %s", (proxy_id,))


def test_the_legacy_take_gets_a_lease_of_the_configured_length(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    in_use, worker, has_start, length = lease_of(pool, 1)
    assert (in_use, worker, has_start) == (True, "c0ffee_1", True)
    assert abs(length.total_seconds() - 300) < 1  # the default lease_duration, 5 minutes


def test_the_operator_sets_the_lease_length_with_an_update(pool):
    pool.run("UPDATE proxy_lease_settings SET lease_duration = '90 seconds'")
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    assert abs(lease_of(pool, 1)[3].total_seconds() - 90) < 1


@pytest.mark.parametrize("release", [
    "UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1",
    "UPDATE proxies SET is_in_use = false WHERE id = 1",
    "UPDATE proxies SET worker_id = NULL WHERE id = 1",
])
def test_every_legacy_way_of_releasing_frees_the_proxy_completely(pool, release):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    pool.run(release)
    assert pool.one("SELECT (is_in_use, worker_id, leased_at, leased_until) FROM proxies WHERE id = 1") == \
        ("f", None, None, None)


def test_a_new_holder_gets_a_new_lease(pool):
    """Once the old lease has run out (a live one cannot pass on: see test_lease_api)."""
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1', leased_until = now() - interval '1 second'"
             " WHERE id = 1")
    pool.run("UPDATE proxies SET worker_id = 'c0ffee_2' WHERE id = 1")
    in_use, worker, has_start, length = lease_of(pool, 1)
    assert (in_use, worker, has_start) == (True, "c0ffee_2", True)
    assert abs(length.total_seconds() - 300) < 1


@pytest.mark.parametrize("half_take", [
    "UPDATE proxies SET is_in_use = true WHERE id = 1",
    "UPDATE proxies SET worker_id = 'c0ffee_1' WHERE id = 1",
    "INSERT INTO proxies (id, address, worker_id) VALUES (99, 'x', 'c0ffee_1')",
])
def test_taking_a_free_proxy_with_only_one_of_the_two_columns_is_refused_with_a_hint(pool, half_take):
    with pytest.raises(psycopg.errors.CheckViolation) as failure:
        pool.run(half_take)
    assert "only one of is_in_use and worker_id" in str(failure.value)
    assert failure.value.diag.message_hint.startswith("Call acquire_proxy($1), or set both in one statement")


def test_the_rule_holds_even_for_writes_that_bypass_triggers(pool):
    with pool.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # as logical replication and pg_restore do
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")


def test_a_heartbeat_renews_the_lease_of_the_workers_proxy(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_2' WHERE id = 2")
    pool.run("UPDATE proxies SET leased_until = now() + interval '10 seconds' WHERE id IN (1, 2)")
    # Its last heartbeat was a renewal slot ago (a tenth of lease_duration): this one is the slot's first.
    task = pool.one("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                    "VALUES ('processing', 'c0ffee_1', now() - interval '1 minute') RETURNING id")

    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = %s", (task,))

    assert pool.one("SELECT leased_until > now() + interval '4 minutes' FROM proxies WHERE id = 1") is True
    assert pool.one("SELECT leased_until < now() + interval '11 seconds' FROM proxies WHERE id = 2") is True


def test_a_heartbeat_of_an_object_task_renews_too_and_skips_a_fresh_lease(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
    before = pool.one("SELECT leased_until FROM proxies WHERE id = 1")
    pool.run("INSERT INTO object_tasks (status, worker_id, heartbeat_at) "
             "VALUES ('processing', 'c0ffee_1', now() - interval '1 minute')")
    pool.run("UPDATE object_tasks SET heartbeat_at = now()")
    assert pool.one("SELECT leased_until FROM proxies WHERE id = 1") == before  # more than 90% left: no write
    pool.run("UPDATE proxies SET leased_until = now() + interval '1 minute' WHERE id = 1")
    pool.run("UPDATE object_tasks SET heartbeat_at = heartbeat_at - interval '1 minute'")  # back a slot: no renewal
    pool.run("UPDATE object_tasks SET heartbeat_at = now()")
    assert pool.one("SELECT leased_until > now() + interval '4 minutes' FROM proxies WHERE id = 1") is True


def test_a_heartbeat_of_a_task_not_in_processing_renews_nothing(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1', leased_until = now() + interval '5 s'"
             " WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('done', 'c0ffee_1', now())")
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now()")
    assert pool.one("SELECT leased_until < now() + interval '6 seconds' FROM proxies WHERE id = 1") is True


def test_the_settings_keep_their_one_row_and_sane_values(pool):
    with pytest.raises(psycopg.errors.RestrictViolation):
        pool.run("DELETE FROM proxy_lease_settings")
    with pytest.raises(psycopg.errors.RestrictViolation):
        pool.run("TRUNCATE proxy_lease_settings")
    with pytest.raises(psycopg.errors.CheckViolation):
        pool.run("UPDATE proxy_lease_settings SET lease_duration = '0 seconds'")
    with pytest.raises(psycopg.errors.CheckViolation):
        pool.run("UPDATE proxy_lease_settings SET orphan_grace = '10 minutes'")
    with pytest.raises(psycopg.errors.UniqueViolation):
        pool.run("INSERT INTO proxy_lease_settings DEFAULT VALUES")


def test_a_heartbeat_written_into_the_past_renews_nothing(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1', leased_until = now() + interval '5 s'"
             " WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c0ffee_1', now())")
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() - interval '10 minutes'")
    pool.run("UPDATE catalog_tasks SET heartbeat_at = NULL")
    assert pool.one("SELECT leased_until < now() + interval '6 seconds' FROM proxies WHERE id = 1") is True


def test_a_heartbeat_from_a_client_with_a_skewed_clock_still_renews_from_the_database_clock(pool):
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1', leased_until = now() + interval '5 s'"
             " WHERE id = 1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
             "VALUES ('processing', 'c0ffee_1', now() - interval '4 hours')")
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() - interval '3 hours'")  # forward, in the client's time
    assert pool.one("SELECT leased_until - now() FROM proxies WHERE id = 1").total_seconds() == pytest.approx(300, abs=2)


def test_the_fleets_own_roles_need_no_rights_on_proxy_leases_objects(pool):
    """Workers write proxies and tasks; a heartbeat manager only the task tables. Both keep working."""
    pool.run("CREATE ROLE fleet_worker LOGIN; CREATE ROLE heartbeat_manager LOGIN")
    pool.run("GRANT SELECT, UPDATE ON proxies, catalog_tasks, object_tasks TO fleet_worker")
    pool.run("GRANT SELECT, INSERT ON catalog_tasks TO fleet_worker")
    pool.run("GRANT SELECT, UPDATE ON catalog_tasks, object_tasks TO heartbeat_manager")
    try:
        with pool.connect() as worker:
            worker.execute("SET ROLE fleet_worker")
            worker.execute("UPDATE proxies SET is_in_use = true, worker_id = 'c0ffee_1' WHERE id = 1")
            worker.execute("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) "
                           "VALUES ('processing', 'c0ffee_1', now() - interval '1 hour')")
            worker.execute("UPDATE proxies SET leased_until = now() + interval '5 seconds' WHERE id = 1")
            worker.execute("UPDATE catalog_tasks SET heartbeat_at = now() - interval '10 minutes'")
        assert pool.one("SELECT leased_until > now() + interval '4 minutes' FROM proxies WHERE id = 1") is True
        with pool.connect() as manager:
            manager.execute("SET ROLE heartbeat_manager")
            manager.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL "
                            "WHERE status = 'processing' AND heartbeat_at < now() - interval '5 minutes'")
        assert pool.one("SELECT is_in_use FROM proxies WHERE id = 1") is False
    finally:
        pool.run("DROP OWNED BY fleet_worker, heartbeat_manager; DROP ROLE fleet_worker, heartbeat_manager")


def test_no_other_role_may_attach_the_owner_run_trigger_functions(pool):
    """SECURITY DEFINER functions attached to a table of one's own would run code as the owner."""
    pool.run("CREATE ROLE outsider LOGIN")
    try:
        with pool.connect() as outsider:
            outsider.execute("SET ROLE outsider")
            outsider.execute("CREATE TEMP TABLE mine (status text, worker_id text, heartbeat_at timestamptz)")
            for function in ("tg_tasks__release_proxy_on_task_exit", "tg_tasks__renew_proxy_lease_on_heartbeat",
                             "tg_proxies__keep_lease_consistent"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    outsider.execute(f"CREATE TRIGGER t AFTER DELETE ON mine FOR EACH ROW "
                                     f"EXECUTE FUNCTION public.{function}()")
    finally:
        pool.run("DROP ROLE outsider")
