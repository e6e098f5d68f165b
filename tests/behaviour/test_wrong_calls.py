"""Wrong calls get help (0018_wrong_call_help): a forgotten token, swapped arguments, a bare number as a lease.

Each wrong call is made as the fleet makes calls: through psycopg (its own parameters, and literals
as in psql) and through asyncpg (server-side prepared statements whose parameters are untyped until
PostgreSQL picks the function). Each gets its SQLSTATE, a message naming the values, and a HINT with
the right call; nothing changes. The helpers must never take a correct call, and a worker must get
them, not "permission denied". The "Bad input" catalogue (docs/bad-input.md) runs the same calls from psql's side.
"""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import timedelta

import asyncpg
import psycopg
import pytest

from tests.helpers import acquire, catalog, executed_plans, plan_nodes
from tools.harness import ROOT

_spec = importlib.util.spec_from_file_location("example_async_worker", ROOT / "examples" / "async_worker.py")
async_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(async_worker)


@pytest.fixture
def pool(db):
    """Five proxies; c1_1 holds one. (database, proxy_id, lease_token)."""
    db.run("INSERT INTO proxies (address) SELECT '10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    proxy_id, _, token, _ = acquire(db, "c1_1", "1 hour")
    return db, proxy_id, token


def state(database):
    return database.all("SELECT p::text FROM proxies p ORDER BY id"), database.one("SELECT count(*) FROM proxy_lease_events")


def psycopg_error(database, query, params=None):
    with pytest.raises(psycopg.Error) as raised:
        database.one(query, params)
    error = raised.value
    return error.sqlstate, error.diag.message_primary, error.diag.message_detail, error.diag.message_hint


def asyncpg_call(database, query, *args, as_role=None):
    """fetchval through a prepared statement, as examples/async_worker.py calls; the error's fields or the value."""
    async def run():
        conn = await asyncpg.connect(database.url)
        try:
            if as_role:
                await conn.execute(f"SET ROLE {as_role}")
            try:
                return await conn.fetchval(query, *args)
            except asyncpg.PostgresError as error:
                return error.sqlstate, error.message, error.detail, error.hint
        finally:
            await conn.close()
    return asyncio.run(run())


# --- the token forgotten -------------------------------------------------------------------------------

FORGOTTEN = [
    ("release_proxy", "SELECT release_proxy(%s)", "SELECT release_proxy($1)", (), "release_proxy({p})",
     "Call release_proxy({p}, <lease_token from acquire_proxy>)."),
    ("renew_proxy_lease", "SELECT renew_proxy_lease(%s)", "SELECT renew_proxy_lease($1)", (), "renew_proxy_lease({p})",
     "Call renew_proxy_lease({p}, <lease_token from acquire_proxy>), with a lease"),
    ("block_proxy", "SELECT block_proxy(%s, %s)", "SELECT block_proxy($1, $2)", ("HTTP 403",),
     "block_proxy({p}, 'HTTP 403')", "Call block_proxy({p}, <lease_token from acquire_proxy>, 'HTTP 403'), with a cooldown"),
]


@pytest.mark.parametrize("name, through_psycopg, through_asyncpg, more, called, hint", FORGOTTEN,
                         ids=[case[0] for case in FORGOTTEN])
def test_a_forgotten_token_gets_42883_with_the_call_to_make(pool, name, through_psycopg, through_asyncpg, more,
                                                           called, hint):
    database, proxy_id, _ = pool
    before = state(database)
    literal = f"SELECT {called.format(p=proxy_id)}"          # as typed in psql: an integer literal, an unknown
    for sqlstate, message, detail, given_hint in (
            psycopg_error(database, through_psycopg, (proxy_id, *more)),
            psycopg_error(database, literal),
            asyncpg_call(database, through_asyncpg, proxy_id, *more)):
        assert sqlstate == "42883"
        assert message == f"{called.format(p=proxy_id)} is missing the lease_token"
        assert "(proxy_id, lease_token)" in detail
        assert given_hint.startswith(hint.format(p=proxy_id))
    assert state(database) == before


def test_a_forgotten_token_reveals_nothing_about_the_proxy(pool):
    """The hint is the same for a held proxy, a free one and no proxy at all: never the token."""
    database, proxy_id, token = pool
    hints = {psycopg_error(database, "SELECT release_proxy(%s)", (p,))[3].replace(str(p), "<p>")
             for p in (proxy_id, proxy_id + 1, 999)}
    assert len(hints) == 1 and str(token) not in hints.pop()
    assert psycopg_error(database, "SELECT release_proxy(NULL)")[1] == "release_proxy(NULL) is missing the lease_token"


def test_the_helpers_have_exactly_the_rights_of_the_functions_they_stand_beside(db):
    rights = dict(db.all("""
        SELECT p.oid::regprocedure::text,
               array(SELECT a.grantee::regrole::text || ':' || a.privilege_type
                       FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      WHERE a.grantee <> p.proowner ORDER BY 1)
          FROM pg_proc p WHERE p.proname IN ('release_proxy', 'renew_proxy_lease', 'block_proxy')"""))
    assert rights["release_proxy(bigint)"] == rights["release_proxy(bigint,bigint)"]
    assert rights["renew_proxy_lease(bigint)"] == rights["renew_proxy_lease(bigint,bigint,interval)"]
    assert rights["block_proxy(bigint,text)"] == rights["block_proxy(bigint,bigint,text,interval)"]
    assert rights["release_proxy(bigint)"] == ["proxy_leases_operator:EXECUTE", "proxy_leases_worker:EXECUTE"]


def test_a_worker_gets_the_help_and_a_role_without_the_api_gets_permission_denied(pool):
    database, proxy_id, token = pool
    database.run("CREATE ROLE wrong_caller LOGIN IN ROLE proxy_leases_worker; CREATE ROLE outsider LOGIN")
    try:
        for wrong, right, args in (("SELECT release_proxy($1)", "SELECT release_proxy($1, $2)", ()),
                                   ("SELECT renew_proxy_lease($1)", "SELECT renew_proxy_lease($1, $2)", ()),
                                   ("SELECT block_proxy($1, $2)", "SELECT block_proxy($1, $3, $2)", ("HTTP 403",))):
            assert asyncpg_call(database, wrong, proxy_id, *args, as_role="wrong_caller")[0] == "42883"
            assert asyncpg_call(database, wrong, proxy_id, *args, as_role="outsider")[0] == "42501"
            assert asyncpg_call(database, right, proxy_id, *args, token, as_role="outsider")[0] == "42501"
    finally:
        database.run("DROP OWNED BY wrong_caller, outsider; DROP ROLE wrong_caller, outsider")


def test_a_fleet_role_that_kept_its_rights_in_0014_gets_the_help_too(fresh_database):
    database = fresh_database()
    database.upgrade("0013_event_recording", cron="off")
    database.run("CREATE ROLE legacy_worker LOGIN; GRANT SELECT, UPDATE ON proxies TO legacy_worker")
    try:
        database.upgrade(cron="off")
        for helper, real in (("release_proxy(bigint)", "release_proxy(bigint, bigint)"),
                             ("renew_proxy_lease(bigint)", "renew_proxy_lease(bigint, bigint, interval)"),
                             ("block_proxy(bigint, text)", "block_proxy(bigint, bigint, text, interval)")):
            assert database.one("SELECT has_function_privilege('legacy_worker', %s, 'EXECUTE'), "
                                "has_function_privilege('legacy_worker', %s, 'EXECUTE')", (helper, real)) == (True, True)
    finally:
        database.run("DROP OWNED BY legacy_worker; DROP ROLE legacy_worker")


# --- correct calls still reach the real functions -------------------------------------------------------

def test_every_correct_call_still_resolves_to_the_real_function(pool):
    """Literals, int and bigint parameters, untyped literals, asyncpg's untyped $n: the fleet's calls."""
    database, proxy_id, token = pool
    with database.connect() as conn:
        assert conn.execute("SELECT renew_proxy_lease(%s, %s) > now()", (proxy_id, token)).fetchone() == (True,)
        assert conn.execute(f"SELECT renew_proxy_lease({proxy_id}, {token}, '1 hour') > now()").fetchone() == (True,)
        assert conn.execute(f"SELECT renew_proxy_lease('{proxy_id}', '{token}') > now()").fetchone() == (True,)
        assert conn.execute("SELECT renew_proxy_lease(%s::int, %s::bigint, %s::interval) > now()",
                            (proxy_id, token, "1 hour")).fetchone() == (True,)
        assert conn.execute(f"SELECT release_proxy({proxy_id}::smallint, '{token}')").fetchone() == (True,)
        assert conn.execute(f"SELECT release_proxy({proxy_id}, {token})").fetchone() == (False,)
        proxy_id, _, token, _ = conn.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()
        assert conn.execute("SELECT block_proxy(%s, %s, %s)", (proxy_id, token, "HTTP 403")).fetchone() == (True,)
        proxy_id, _, token, _ = conn.execute("SELECT * FROM acquire_proxy(%s, %s)", ("c1_1", "1 hour")).fetchone()
        assert conn.execute(f"SELECT block_proxy({proxy_id}, '{token}', 'HTTP 403', '1 minute')").fetchone() == (True,)
        proxy_id, _, token, _ = conn.execute("SELECT * FROM acquire_proxy(worker_id => 'c1_1')").fetchone()
        assert conn.execute("SELECT release_proxy(proxy_id => %s, lease_token => %s)",
                            (proxy_id, token)).fetchone() == (True,)
        # A server-side PREPARE leaves every parameter untyped: PostgreSQL picks the real function.
        for name, call in (("r", "release_proxy($1, $2)"), ("n", "renew_proxy_lease($1, $2)"),
                           ("n3", "renew_proxy_lease($1, $2, $3)"), ("b3", "block_proxy($1, $2, $3)"),
                           ("b4", "block_proxy($1, $2, $3, $4)"), ("a", "acquire_proxy($1, $2)")):
            conn.execute(f"PREPARE {name} AS SELECT {call}")
        assert dict(conn.execute("SELECT name, parameter_types::text FROM pg_prepared_statements").fetchall()) == {
            "r": "{bigint,bigint}", "n": "{bigint,bigint}", "n3": "{bigint,bigint,interval}",
            "b3": "{bigint,bigint,text}", "b4": "{bigint,bigint,text,interval}", "a": "{text,interval}"}


def test_asyncpg_prepares_the_fleets_calls_for_the_real_functions(pool):
    """examples/async_worker.py's statements, prepared by asyncpg: their parameter types, and their results."""
    database, _, _ = pool

    async def run():
        conn = await asyncpg.connect(database.url)
        try:
            types = {}
            for name in ("ACQUIRE", "RENEW", "RELEASE", "BLOCK"):
                statement = await conn.prepare(getattr(async_worker, name))
                types[name] = [t.name for t in statement.get_parameters()]
            proxy_id, _, token = await conn.fetchrow(async_worker.ACQUIRE, "c2_1", None)
            renewed = await conn.fetchval(async_worker.RENEW, proxy_id, token, timedelta(minutes=10))
            released = await conn.fetchval(async_worker.RELEASE, proxy_id, token)
            proxy_id, _, token = await conn.fetchrow(async_worker.ACQUIRE, "c2_1", timedelta(minutes=10))
            blocked = await conn.fetchval(async_worker.BLOCK, proxy_id, token, "HTTP 403", None)
            return types, renewed is not None, released, blocked
        finally:
            await conn.close()

    types, renewed, released, blocked = asyncio.run(run())
    assert types == {"ACQUIRE": ["text", "interval"], "RENEW": ["int8", "int8", "interval"],
                     "RELEASE": ["int8", "int8"], "BLOCK": ["int8", "int8", "text", "interval"]}
    assert (renewed, released, blocked) == (True, True, True)


# --- arguments swapped ----------------------------------------------------------------------------------

SWAPPED = [
    ("renew_proxy_lease", "SELECT renew_proxy_lease(%s, %s)", "SELECT renew_proxy_lease($1, $2)", (),
     "Call renew_proxy_lease({p}, {t}): the proxy id first, then the lease token.", "renewed"),
    ("renew_proxy_lease with a lease", "SELECT renew_proxy_lease(%s, %s, %s::interval)",
     "SELECT renew_proxy_lease($1, $2, $3)", (timedelta(minutes=10),),
     "Call renew_proxy_lease({p}, {t}, '00:10:00'): the proxy id first, then the lease token.", "renewed"),
    ("release_proxy", "SELECT release_proxy(%s, %s)", "SELECT release_proxy($1, $2)", (),
     "Call release_proxy({p}, {t}): the proxy id first, then the lease token.", "released"),
    ("block_proxy", "SELECT block_proxy(%s, %s, %s, %s::interval)", "SELECT block_proxy($1, $2, $3, $4)",
     ("HTTP 403", timedelta(minutes=30)),
     "Call block_proxy({p}, {t}, 'HTTP 403', '00:30:00'): the proxy id first, then the lease token.", "blocked"),
]


@pytest.mark.parametrize("name, through_psycopg, through_asyncpg, more, hint, verb", SWAPPED,
                         ids=[case[0] for case in SWAPPED])
def test_swapped_arguments_get_22023_with_the_call_in_order_and_change_nothing(pool, name, through_psycopg,
                                                                              through_asyncpg, more, hint, verb):
    database, proxy_id, token = pool
    before = state(database)
    for sqlstate, message, detail, given_hint in (
            psycopg_error(database, through_psycopg, (token, proxy_id, *more)),
            asyncpg_call(database, through_asyncpg, token, proxy_id, *more)):
        assert sqlstate == "22023"
        assert message == f"proxy_id {token} and lease_token {proxy_id} look swapped"
        assert detail == f"Proxy {proxy_id} is held under lease token {token}. Nothing was {verb}."
        assert given_hint == hint.format(p=proxy_id, t=token)
    assert state(database) == before
    # In the right order, the same call does what it should.
    assert database.one(through_psycopg, (proxy_id, token, *more)) not in (None, False)


def test_swapped_arguments_after_the_lease_ended_still_say_swapped_not_stale(pool):
    """The proxy id given is no proxy, the token given is one: swapped, whatever became of the grant."""
    database, proxy_id, token = pool
    assert database.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
    for query, args in (("SELECT renew_proxy_lease(%s, %s)", ()), ("SELECT release_proxy(%s, %s)", ()),
                        ("SELECT block_proxy(%s, %s, %s)", ("HTTP 403",))):
        sqlstate, message, detail, hint = psycopg_error(database, query, (token, proxy_id, *args))
        assert (sqlstate, message) == ("22023", f"proxy_id {token} and lease_token {proxy_id} look swapped")
        assert hint.startswith(f"Call {query[7:query.index('(')]}({proxy_id}, {token}")
    # block_proxy still knows the grant that ended (released_lease_token): the detail names it.
    assert psycopg_error(database, "SELECT block_proxy(%s, %s, 'x')", (token, proxy_id))[2] == (
        f"Proxy {proxy_id} was last granted under lease token {token}. Nothing was blocked.")


def test_a_stale_token_in_the_right_order_is_not_taken_for_a_swap(pool):
    database, proxy_id, token = pool
    assert database.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
    assert psycopg_error(database, "SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))[0] == "LP001"
    assert database.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is False
    assert database.one("SELECT release_proxy(%s, %s)", (proxy_id + 1, token)) is False
    assert psycopg_error(database, "SELECT renew_proxy_lease(%s, %s)", (999, token))[0] == "LP001"
    # A proxy id that no proxy has, and a "token" that is a proxy's id: not a swap unless the first is as
    # large as a token (every token is above 10^15).
    assert psycopg_error(database, "SELECT renew_proxy_lease(%s, %s)", (999, proxy_id))[0] == "LP001"
    assert database.one("SELECT release_proxy(%s, %s)", (999, proxy_id)) is False
    assert database.one("SELECT block_proxy(%s, %s, 'x')", (999, proxy_id)) is False


def test_the_swap_check_runs_only_when_the_call_failed(pool):
    """A renewal, a release or a ban that succeeds runs nothing it did not run before 0018: the query that
    looks for a swap (proxies read as s) runs only once the pair named no grant."""
    database, proxy_id, token = pool

    def reads_of_s(call):
        _, plans = executed_plans(database, f"SELECT {call}")
        return sum(1 for plan in plans for node in plan_nodes(plan)
                   if node.get("Relation Name") == "proxies" and node.get("Alias") == "s")

    assert reads_of_s(f"renew_proxy_lease({proxy_id}, {token})") == 0
    assert reads_of_s(f"release_proxy({proxy_id}, {token})") == 0
    proxy_id, _, token, _ = acquire(database, "c1_1")
    assert reads_of_s(f"block_proxy({proxy_id}, {token}, 'HTTP 403')") == 0
    # A stale token, in order: the check runs, finds no swap, and the call returns false as before.
    assert reads_of_s(f"release_proxy({proxy_id}, {token})") == 1
    assert reads_of_s(f"block_proxy({proxy_id + 1}, {token}, 'HTTP 403')") == 1


# --- a bare number as a lease ---------------------------------------------------------------------------

def test_a_lease_shorter_than_orphan_grace_is_granted_with_a_warning_through_psycopg(pool):
    database, _, _ = pool
    warnings = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda notice: warnings.append(
            (notice.severity_nonlocalized, notice.sqlstate, notice.message_primary, notice.message_hint)))
        proxy_id, _, token, until = conn.execute("SELECT * FROM acquire_proxy('c_2', '30')").fetchone()
        left = conn.execute("SELECT %s - clock_timestamp()", (until,)).fetchone()[0]
        conn.execute("SELECT renew_proxy_lease(%s, %s, %s)", (proxy_id, token, "5"))
        conn.execute("SELECT renew_proxy_lease(%s, %s, '90 seconds')", (proxy_id, token))      # not short: silent
        conn.execute("SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))                    # lease_duration
        conn.execute("SELECT * FROM acquire_proxy('c_3', interval '1.5 seconds')")
    assert timedelta(seconds=28) < left <= timedelta(seconds=30)                                # granted as asked
    assert warnings == [
        ("WARNING", "01000", "lease 00:00:30 is shorter than orphan_grace (00:01:00)",
         "If you meant minutes, write '30 minutes'; NULL (or nothing) gives lease_duration (00:05:00). "
         "A lease this short on purpose draws this warning on every call."),
        ("WARNING", "01000", "lease 00:00:05 is shorter than orphan_grace (00:01:00)",
         "If you meant minutes, write '5 minutes'; NULL (or nothing) gives lease_duration (00:05:00). "
         "A lease this short on purpose draws this warning on every call."),
        ("WARNING", "01000", "lease 00:00:01.5 is shorter than orphan_grace (00:01:00)",
         "If you meant minutes, write '<n> minutes'; NULL (or nothing) gives lease_duration (00:05:00). "
         "A lease this short on purpose draws this warning on every call.")]


def test_a_lease_shorter_than_orphan_grace_is_granted_with_a_warning_through_asyncpg(pool):
    database, _, _ = pool

    async def run():
        conn = await asyncpg.connect(database.url)
        seen = []
        conn.add_log_listener(lambda _, message: seen.append((message.severity, message.sqlstate, message.message,
                                                               message.hint)))
        try:
            # asyncpg sends an interval parameter in binary, from a timedelta: a bare '30' is a literal.
            granted = await conn.fetchrow("SELECT * FROM acquire_proxy($1, '30')", "c_2")
            await conn.fetchrow("SELECT * FROM acquire_proxy($1, $2)", "c_3", timedelta(seconds=20))
            await conn.fetchrow("SELECT * FROM acquire_proxy($1, $2)", "c_4", None)
            await conn.fetchrow("SELECT * FROM acquire_proxy($1, $2)", "c_5", timedelta(minutes=30))
            await asyncio.sleep(0.1)      # log messages are delivered by the event loop
            return granted, seen
        finally:
            await conn.close()

    granted, seen = asyncio.run(run())
    assert granted is not None
    assert [(severity, sqlstate, message) for severity, sqlstate, message, _ in seen] == [
        ("WARNING", "01000", "lease 00:00:30 is shorter than orphan_grace (00:01:00)"),
        ("WARNING", "01000", "lease 00:00:20 is shorter than orphan_grace (00:01:00)")]
    assert seen[0][3].startswith("If you meant minutes, write '30 minutes';")


def test_the_warning_follows_orphan_grace(pool):
    database, _, _ = pool
    database.run("UPDATE proxy_lease_settings SET orphan_grace = '10 seconds'")
    warnings = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda notice: warnings.append(notice.message_primary))
        conn.execute("SELECT * FROM acquire_proxy('c_2', '30')")
        conn.execute("SELECT * FROM acquire_proxy('c_3', '5')")
    assert warnings == ["lease 00:00:05 is shorter than orphan_grace (00:00:10)"]


# --- the revision itself ---------------------------------------------------------------------------------

def test_the_downgrade_to_0017_restores_exactly_the_previous_definitions_and_behaviour(fresh_database):
    reference = fresh_database()
    reference.upgrade("0017_finite_intervals", cron="off")
    database = fresh_database()
    database.upgrade(cron="off")
    at_head = catalog(database)
    database.downgrade("0017_finite_intervals", cron="off")
    assert catalog(database) == catalog(reference)

    database.run("INSERT INTO proxies (address) VALUES ('10.0.0.1:3128')")
    proxy_id, _, token, _ = acquire(database, "c1_1")
    sqlstate, message, _, _ = psycopg_error(database, "SELECT release_proxy(%s)", (proxy_id,))
    assert sqlstate == "42883" and message.startswith("function release_proxy(") and message.endswith("does not exist")
    assert psycopg_error(database, "SELECT renew_proxy_lease(%s, %s)", (token, proxy_id))[0] == "LP001"
    assert database.one("SELECT release_proxy(%s, %s)", (token, proxy_id)) is False

    database.upgrade(cron="off")
    assert catalog(database) == at_head


# --- a container id where a worker id belongs ---------------------------------------------------------

def test_a_container_id_given_as_the_worker_id_gets_a_hint_showing_a_worker_id(pool):
    database, _, _ = pool
    sqlstate, message, _, hint = psycopg_error(database, "SELECT * FROM acquire_proxy('8b4f59aa')")
    assert (sqlstate, message) == ("22023", "malformed worker_id '8b4f59aa'")
    assert hint.startswith("Pass the calling worker's own id, such as '8b4f59aa_3' (container 8b4f59aa, worker 3)")


# --- the reason forgotten ---------------------------------------------------------------------------

def test_a_forgotten_reason_gets_42883_with_the_call_to_make_and_the_untyped_calls_are_unchanged(pool):
    database, proxy_id, token = pool
    before = state(database)
    expected = ("42883", f"block_proxy({proxy_id}, {token}) is missing the reason")
    assert psycopg_error(database, "SELECT block_proxy(%s, %s)", (proxy_id, token))[:2] == expected
    assert asyncpg_call(database, "SELECT block_proxy($1::bigint, $2::bigint)", proxy_id, token)[:2] == expected
    hint = psycopg_error(database, f"SELECT block_proxy({proxy_id}, {token})")[3]
    assert hint.startswith(f"Call block_proxy({proxy_id}, {token}, 'HTTP 403')")
    assert state(database) == before
    # An untyped second argument is still the forgotten token, not a forgotten reason.
    assert psycopg_error(database, f"SELECT block_proxy({proxy_id}, 'HTTP 403')")[1].endswith("is missing the lease_token")
    with database.connect() as conn:
        conn.execute("PREPARE two AS SELECT block_proxy($1, $2)")
        assert conn.execute("SELECT parameter_types::text FROM pg_prepared_statements").fetchone() == ("{bigint,text}",)
