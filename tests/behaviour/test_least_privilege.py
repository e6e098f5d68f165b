"""Least privilege (0014_least_privilege): workers use the API without the right to write proxies.

Every role here is a real login role on the session's server, used with SET ROLE on its own
connection, as a fleet's process would be. Roles belong to the server, so each test drops its own.
"""

from __future__ import annotations

from contextlib import contextmanager

import psycopg
import pytest

from tests.helpers import acquire

# The fleet's claim of a task, as its workers run it (examples/worker.py).
CLAIM = """UPDATE catalog_tasks SET status = 'processing', worker_id = %s, heartbeat_at = now()
            WHERE id = (SELECT id FROM catalog_tasks WHERE status = 'pending' ORDER BY id LIMIT 1
                        FOR UPDATE SKIP LOCKED)
        RETURNING id"""

CLEAN_UPS = ("SELECT release_stuck_proxies()", "SELECT release_container_proxies('c1')",
             "SELECT requeue_stale_tasks()", "SELECT unblock_proxy(1)", "SELECT unblock_cooled_down_proxies()",
             "SELECT prune_lease_events()")


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    db.run("INSERT INTO catalog_tasks (status) SELECT 'pending' FROM generate_series(1, 3)")
    return db


@contextmanager
def login_role(database, name: str, *member_of: str):
    """A login role, member of `member_of`, and a connection that is it (SET ROLE); dropped after."""
    database.run(f"CREATE ROLE {name} LOGIN" + (f" IN ROLE {', '.join(member_of)}" if member_of else ""))
    try:
        with database.connect() as conn:
            conn.execute(f"SET ROLE {name}")
            yield conn
    finally:
        database.run(f"DROP OWNED BY {name}; DROP ROLE {name}")


def refused(conn, statement: str, params=None) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"), conn.transaction():
        conn.execute(statement, params)


def test_a_worker_role_uses_the_api_and_its_tasks_but_cannot_write_proxies_or_run_the_clean_ups(pool):
    with login_role(pool, "scraper", "proxy_leases_worker") as worker:
        task = worker.execute(CLAIM, ("c1_1",)).fetchone()[0]
        proxy_id, _, token, _ = worker.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()
        assert worker.execute("SELECT renew_proxy_lease(%s, %s) > now()", (proxy_id, token)).fetchone() == (True,)
        assert worker.execute("SELECT in_use FROM proxy_pool_status").fetchone() == (1,)
        assert worker.execute("SELECT proxies_held FROM proxy_pool_by_container").fetchall() == [(1,)]
        worker.execute("SELECT * FROM stuck_proxies").fetchall()
        assert worker.execute("SELECT release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
        proxy_id, _, token, _ = worker.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()
        assert worker.execute("SELECT block_proxy(%s, %s, 'HTTP 403', '1 minute')", (proxy_id, token)).fetchone()[0]
        assert worker.execute("UPDATE catalog_tasks SET status = 'done' WHERE id = %s AND worker_id = 'c1_1'",
                              (task,)).rowcount == 1

        for statement in ("UPDATE proxies SET is_in_use = false", "INSERT INTO proxies (address) VALUES ('x')",
                          "DELETE FROM proxies", "SELECT * FROM proxies", "SELECT * FROM proxy_lease_events",
                          "INSERT INTO proxy_lease_events (proxy_id, event, reason) VALUES (1, 'granted', 'x')",
                          "SELECT * FROM proxy_recoveries", "UPDATE proxy_lease_settings SET lease_duration = '1 day'",
                          "INSERT INTO catalog_tasks (status) VALUES ('pending')", "DELETE FROM catalog_tasks",
                          *CLEAN_UPS):
            refused(worker, statement)
    assert pool.one("SELECT count(*) FROM proxies") == 5
    assert pool.one("SELECT count(*) FROM proxies WHERE is_blocked") == 1
    assert pool.all("SELECT event, reason, db_user FROM proxy_lease_events ORDER BY id") == [
        ("granted", "acquired", "scraper"), ("released", "released_by_worker", "scraper"),
        ("granted", "acquired", "scraper"), ("released", "blocked_by_worker", "scraper"),
        ("blocked", "blocked_by_worker", "scraper")]


def test_the_operator_role_also_runs_the_clean_ups_and_reads_the_trail_but_writes_neither(pool):
    held = acquire(pool, "c1_1")
    acquire(pool, "c2_1")
    with login_role(pool, "fleet_ops", "proxy_leases_operator") as operator:
        assert operator.execute("SELECT release_container_proxies('c1')").fetchone() == (1,)
        assert operator.execute("SELECT release_stuck_proxies()").fetchone() == (0,)
        assert operator.execute("SELECT requeue_stale_tasks()").fetchone() == (0,)
        assert operator.execute("SELECT unblock_cooled_down_proxies()").fetchone() == (0,)
        assert operator.execute("SELECT unblock_proxy(1)").fetchone() == (False,)
        assert operator.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 0)
        assert operator.execute("SELECT count(*) FROM proxy_lease_events WHERE proxy_id = %s",
                                (held[0],)).fetchone() == (2,)
        assert operator.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone() == (1,)
        operator.execute("SELECT * FROM proxy_recoveries").fetchall()
        operator.execute("SELECT * FROM proxy_recovery_by_hour").fetchall()
        proxy_id, _, token, _ = operator.execute("SELECT * FROM acquire_proxy('c3_1')").fetchone()
        assert operator.execute("SELECT release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
        for statement in ("UPDATE proxies SET is_in_use = false", "DELETE FROM proxy_lease_events",
                          "UPDATE proxy_lease_settings SET record_lease_events = false"):
            refused(operator, statement)
    assert pool.one("SELECT record_lease_events FROM proxy_lease_settings") is True


def test_a_role_given_update_on_proxies_after_the_upgrade_no_longer_reaches_the_api_by_it(pool):
    pool.run("CREATE ROLE late_worker LOGIN")
    pool.run("GRANT SELECT, UPDATE ON proxies TO late_worker")
    try:
        with pool.connect() as conn:
            conn.execute("SET ROLE late_worker")
            refused(conn, "SELECT * FROM acquire_proxy('c1_1')")
            # The legacy path it was given is still there, and the triggers still keep it honest.
            conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'c1_1' WHERE id = 1")
            assert conn.execute("SELECT lease_token IS NOT NULL, leased_until > now() FROM proxies WHERE id = 1"
                                ).fetchone() == (True, True)
    finally:
        pool.run("DROP OWNED BY late_worker; DROP ROLE late_worker")


def test_a_fleet_role_that_could_update_proxies_before_the_upgrade_keeps_the_api_named_in_a_notice(
        fresh_database, capfd):
    database = fresh_database()
    database.upgrade("0013_event_recording", cron="off")
    database.run("INSERT INTO proxies (address) VALUES ('http://10.0.0.1:3128')")
    database.run("CREATE ROLE old_worker LOGIN; CREATE ROLE old_manager LOGIN")
    database.run("GRANT SELECT, UPDATE ON proxies TO old_worker")
    database.run("GRANT SELECT, UPDATE ON catalog_tasks, object_tasks TO old_manager")
    try:
        with database.connect() as worker:   # a worker of the live fleet, mid-upgrade
            worker.execute("SET ROLE old_worker")
            proxy_id, _, token, _ = worker.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()
            database.upgrade(cron="off")
            assert worker.execute("SELECT renew_proxy_lease(%s, %s) > now()", (proxy_id, token)).fetchone() == (True,)
            assert worker.execute("SELECT release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
            assert worker.execute("SELECT release_stuck_proxies()").fetchone() == (0,)
            refused(worker, "SELECT requeue_stale_tasks()")   # it needed the task tables, and still does
        with database.connect() as manager:
            manager.execute("SET ROLE old_manager")
            assert manager.execute("SELECT requeue_stale_tasks()").fetchone() == (0,)
            refused(manager, "SELECT release_stuck_proxies()")
        assert database.one("SELECT has_function_privilege('old_worker', 'acquire_proxy(text, interval)', "
                            "'EXECUTE')") is True
        assert database.one("SELECT has_function_privilege('old_manager', 'acquire_proxy(text, interval)', "
                            "'EXECUTE')") is False
    finally:
        database.run("DROP OWNED BY old_worker, old_manager; DROP ROLE old_worker, old_manager")


def test_every_function_that_runs_as_its_owner_searches_pg_temp_last_and_says_who_may_call_it(db):
    definers = db.all("""
        SELECT p.oid::regprocedure::text, coalesce(p.proconfig, '{}'),
               EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0)
          FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef ORDER BY 1""")
    assert len(definers) >= 17
    # Not '': an empty search_path still searches the caller's pg_temp first for tables and types.
    assert [name for name, config, _ in definers if "search_path=pg_catalog, pg_temp" not in config] == []
    # Any function can run inside one of those, as the owner: a trigger they fire, say.
    empty = db.all("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
                   "AND 'search_path=\"\"' = ANY (p.proconfig) ORDER BY 1")
    # These two fire only for a role that may delete the settings or update the trail: the owner.
    assert empty == [("tg_proxy_lease_events__append_only()",), ("tg_proxy_lease_settings__keep_the_row()",)]
    # Run by anyone, as its owner: only what reveals nothing and changes nothing.
    assert [name for name, _, public in definers if public] == ["worker_has_processing_task(text)"]


HOSTILE_OBJECTS = """
CREATE SCHEMA evil;
CREATE TABLE evil.proxies (LIKE public.proxies);
CREATE TABLE evil.proxy_lease_settings (LIKE public.proxy_lease_settings);
INSERT INTO evil.proxy_lease_settings SELECT * FROM public.proxy_lease_settings;
UPDATE evil.proxy_lease_settings SET lease_duration = '100 years';
CREATE FUNCTION evil.hijacked() RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION evil.set_config(text, text, boolean) RETURNS text LANGUAGE sql AS $$ SELECT evil.hijacked()::text $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$ SELECT evil.hijacked()::text $$;
CREATE FUNCTION evil.starts_with(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE FUNCTION evil.hashtext(text) RETURNS integer LANGUAGE sql AS $$ SELECT evil.hijacked()::integer $$;
CREATE FUNCTION evil.pg_advisory_xact_lock(integer, integer) RETURNS void LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq);
CREATE FUNCTION evil.teq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.teq);
CREATE FUNCTION evil.proxy_address(public.proxies) RETURNS text LANGUAGE sql AS $$ SELECT 'http://evil:1' $$;
"""


def test_a_hostile_search_path_changes_nothing_the_api_does(pool):
    """Objects named like the ones the functions use, in a schema the caller owns, first on its path."""
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c9_1', now())")
    pool.run("CREATE ROLE intruder LOGIN IN ROLE proxy_leases_operator")
    pool.run(f'GRANT CREATE ON DATABASE "{pool.name}" TO intruder')
    try:
        with pool.connect() as intruder:
            intruder.execute("SET ROLE intruder")
            intruder.execute(HOSTILE_OBJECTS)
            intruder.execute("SET search_path = evil, pg_catalog, public")
            # The intruder's own statements do resolve to its objects: the trap is armed.
            with pytest.raises(psycopg.errors.RaiseException, match="hijacked as intruder"):
                intruder.execute("SELECT 1::bigint = 1::bigint")
            proxy_id, address, token, until = intruder.execute(
                "SELECT * FROM public.acquire_proxy('c1_1')").fetchone()
            assert address.startswith("http://10.0.0.") and until < pool.one("SELECT now() + interval '1 hour'")
            intruder.execute("SELECT public.renew_proxy_lease(%s, %s)", (proxy_id, token))
            assert intruder.execute("SELECT public.release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
            proxy_id, _, token, _ = intruder.execute("SELECT * FROM public.acquire_proxy('c1_1')").fetchone()
            assert intruder.execute("SELECT public.block_proxy(%s, %s, 'ban', '1 second')",
                                    (proxy_id, token)).fetchone() == (True,)
            assert intruder.execute("SELECT public.unblock_proxy(%s)", (proxy_id,)).fetchone() == (True,)
            intruder.execute("SELECT * FROM public.acquire_proxy('c2_1')").fetchone()
            assert intruder.execute("SELECT public.release_container_proxies('c2')").fetchone() == (1,)
            assert intruder.execute("SELECT public.requeue_stale_tasks('1 microsecond')").fetchone() == (1,)
            for statement in ("SELECT public.release_stuck_proxies()", "SELECT public.unblock_cooled_down_proxies()",
                              "SELECT public.prune_lease_events()", "SELECT * FROM public.proxy_pool_status",
                              "SELECT * FROM public.proxy_pool_by_container", "SELECT * FROM public.stuck_proxies",
                              "SELECT * FROM public.proxy_recoveries", "CALL public.run_lease_maintenance()"):
                intruder.execute(statement)
            assert intruder.execute("SELECT count(*) FROM evil.proxies").fetchone() == (0,)
    finally:
        pool.run("DROP OWNED BY intruder; DROP ROLE intruder")
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use OR is_blocked") == 0
    assert pool.all("SELECT DISTINCT db_user FROM proxy_lease_events") == [("intruder",)]


def test_a_legacy_worker_with_a_hostile_search_path_still_gets_the_triggers_rules(pool):
    pool.run("CREATE ROLE legacy_intruder LOGIN")
    pool.run("GRANT SELECT, UPDATE ON proxies, catalog_tasks TO legacy_intruder")
    pool.run(f'GRANT CREATE ON DATABASE "{pool.name}" TO legacy_intruder')
    try:
        with pool.connect() as legacy:
            legacy.execute("SET ROLE legacy_intruder")
            legacy.execute(HOSTILE_OBJECTS)
            legacy.execute("SET search_path = evil, pg_catalog, public")
            legacy.execute("UPDATE public.proxies SET is_in_use = true, worker_id = 'c1_1' WHERE id OPERATOR(pg_catalog.=) 1")
            legacy.execute("UPDATE public.proxies SET is_in_use = false WHERE id OPERATOR(pg_catalog.=) 1")
    finally:
        pool.run("DROP OWNED BY legacy_intruder; DROP ROLE legacy_intruder")
    assert pool.one("SELECT is_in_use, worker_id, lease_token FROM proxies WHERE id = 1") == (False, None, None)
    assert pool.all("SELECT event, reason FROM proxy_lease_events ORDER BY id") == [
        ("granted", "direct_update"), ("released", "direct_update")]


TEMPORARY_TRAPS = """
CREATE TABLE pg_temp.proxies (id pg_catalog.int8, is_in_use pg_catalog.bool, worker_id pg_catalog.text);
CREATE TABLE pg_temp.proxy_lease_settings (lease_duration pg_catalog.interval);
CREATE FUNCTION pg_temp.hijacked(pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END $$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.hijacked(VALUE));
CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz CHECK (pg_temp.hijacked(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.interval AS pg_catalog.interval CHECK (pg_temp.hijacked(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.bigint AS pg_catalog.int8 CHECK (pg_temp.hijacked(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.integer AS pg_catalog.int4 CHECK (pg_temp.hijacked(VALUE::pg_catalog.text));
CREATE DOMAIN pg_temp.boolean AS pg_catalog.bool CHECK (pg_temp.hijacked(VALUE::pg_catalog.text));
"""


def test_types_and_tables_in_the_callers_temporary_schema_are_never_used_by_code_that_runs_as_the_owner(pool):
    """Every role may create temporary objects, and PostgreSQL searches pg_temp first for types and
    tables unless search_path names it: a pg_temp.text domain whose CHECK runs the caller's code would
    run it as the owner of any function that declares a text variable."""
    with login_role(pool, "temp_intruder", "proxy_leases_worker") as worker:
        worker.execute(TEMPORARY_TRAPS)
        with pytest.raises(psycopg.errors.RaiseException, match="hijacked as temp_intruder"):   # armed
            worker.execute("SELECT 'x'::text")
        task = worker.execute(CLAIM.replace("RETURNING id", "RETURNING id::pg_catalog.int8"), ("c1_1",)).fetchone()[0]
        proxy_id, _, token, _ = worker.execute("SELECT * FROM public.acquire_proxy('c1_1')").fetchone()
        worker.execute("SELECT public.renew_proxy_lease(%s, %s)", (proxy_id, token))
        pool.run("UPDATE proxies SET renewed_at = renewed_at - interval '1 hour' WHERE id = %s", (proxy_id,))
        worker.execute("UPDATE public.catalog_tasks SET heartbeat_at = pg_catalog.clock_timestamp() WHERE id = %s",
                       (task,))                                   # the heartbeat trigger renews the lease
        assert worker.execute("SELECT public.release_proxy(%s, %s)", (proxy_id, token)).fetchone() == (True,)
        proxy_id, _, token, _ = worker.execute("SELECT * FROM public.acquire_proxy('c1_1')").fetchone()
        assert worker.execute("SELECT public.block_proxy(%s, %s, 'HTTP 403', '1 minute')",
                              (proxy_id, token)).fetchone() == (True,)
        worker.execute("SELECT public.worker_has_processing_task('c1_1')")
        worker.execute("SELECT * FROM public.acquire_proxy('c1_1')").fetchone()
        worker.execute("UPDATE public.catalog_tasks SET status = 'done' WHERE id = %s", (task,))   # release trigger
    with login_role(pool, "temp_operator", "proxy_leases_operator") as operator:
        operator.execute(TEMPORARY_TRAPS)
        for call in ("SELECT public.release_stuck_proxies()", "SELECT public.release_container_proxies('c1')",
                     "SELECT public.requeue_stale_tasks()", "SELECT public.unblock_cooled_down_proxies()",
                     "SELECT public.unblock_proxy(1)", "SELECT public.prune_lease_events()"):
            operator.execute(call)
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0
    assert pool.one("SELECT count(*) FROM proxy_lease_events") == 7


def test_the_notice_naming_a_role_that_keeps_its_rights_reaches_the_operator_once(fresh_database):
    """docs/operations.md, "Roles and rights": 0014 names each role that keeps its rights in a NOTICE. Online, the
    command passes the server's notices on (psql shows them for the --sql script)."""
    from tools.harness import proxy_leases_cli

    database = fresh_database()
    env = {"DATABASE_URL": database.url}
    assert proxy_leases_cli("upgrade", "0013_event_recording", "--cron", "off", env=env).returncode == 0
    database.run("CREATE ROLE old_app; GRANT UPDATE ON proxies TO old_app")
    upgraded = proxy_leases_cli("upgrade", "--cron", "off", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    notices = [line for line in upgraded.stderr.splitlines() if line.startswith("NOTICE: ")]
    assert len(notices) == 1
    assert notices[0].startswith("NOTICE: proxy-leases: old_app could call public.acquire_proxy(text, interval), ")
    assert notices[0].endswith("FROM old_app;)") and "(HINT: Once it is a member of proxy_leases_worker" in notices[0]
    database.run("DROP OWNED BY old_app; DROP ROLE old_app")
