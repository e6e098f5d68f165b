"""Decide after the lock (0016_decide_after_lock, issue 14): what a call decided before it waited for
a row lock is decided again after the wait.

Each test forces one interleaving with real sessions. A second session ("X") holds the proxy row (a
row lock, or an uncommitted write); the call under test runs on a connection of its own, in a
thread, and is seen waiting for that lock by its backend pid (pg_stat_activity and an ungranted
lock in pg_locks); then X commits or rolls back, and what the call did is checked. The only sleeps
let a short lease run out, measured on the database's clock, while the call waits.

The cases, numbered as docs/concurrency.md cites them:
  1. acquire_proxy hands back a proxy blocked while it waited;
  2. acquire_proxy brings back a lease that ran out while it waited;
  3. renew_proxy_lease, release_proxy and block_proxy act on a lease that ran out while they waited;
  4. a long sweep frees, as orphaned, a worker that claimed a task and renewed meanwhile;
  5. the task triggers fail a fleet transaction at REPEATABLE READ or SERIALIZABLE with 40001;
  6. acquire_proxy deadlocks with a transaction that locked the worker's proxy row and then
     calls acquire_proxy itself;
  7. a ban lost in a race with the sweep.

test_each_case_on_the_old_code runs every test again on a database downgraded to
0015_input_checks and checks how it fails there: the assertion about the outcome (with the words
of the bug), a deadlock (40P01) or a serialization failure (40001). That is the proof that each
test can fail, and that its interleaving is really forced. The tests whose outcome 0015 already
had are listed there too, as passing on 0015, so that nobody takes them for proofs: the controls
(X rolls back and nothing ran out; READ COMMITTED; a proxy granted again since), and two where
0015 got it right by accident (see ON_THE_OLD_CODE).

Beyond the issue's cases, block_proxy's rules for a block already in place: a retry of the same
ban changes nothing, a ban never shortens a block (the later end wins, whether or not the sweep
came first), and an unblock outranks a late ban of a grant that ended before it.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import acquire, past_the_grace, sweep
from tools.harness import CRON_DATABASE, Database

OLD = "0015_input_checks"

# Short enough to keep the file fast, long enough for a call to be seen waiting before the lease
# runs out (checked: a call that starts waiting too late is an error, not a pass or a fail). 0.5 s
# was too short once three servers ran the suite at once on 2 cores (scripts/test_versions).
SHORT_LEASE = "2 seconds"

ROW_LOCK_WAITS = ("transactionid", "tuple")


# --- sessions ----------------------------------------------------------------------------------


class Background:
    """One statement on a connection of its own, run in a thread, so that the test can watch it wait
    for a lock and then decide what the session in its way does."""

    def __init__(self, database: Database, query: str, params: Any = None, *, setup: tuple[str, ...] = ()):
        self.query = query
        self.conn = database.connect()
        for statement in setup:
            self.conn.execute(statement)
        self.pid = self.conn.info.backend_pid
        self._outcome: tuple[str, Any] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(query, params), daemon=True)
        self._thread.start()

    def _run(self, query: str, params: Any) -> None:
        try:
            self._outcome = ("rows", self.conn.execute(query, params).fetchall())
        except psycopg.Error as error:
            self._outcome = ("error", error)
        finally:
            self._done.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def outcome(self, timeout: float = 10.0) -> list[tuple]:
        """The rows the statement returned; its error is raised here."""
        assert self._done.wait(timeout), f"{self.query!r} did not return"
        self.conn.close()
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """After whatever it waited for has ended: a statement still running keeps its connection."""
        if self._done.wait(10):
            self.conn.close()


def wait_until_waiting(database: Database, call: Background, wait_events: tuple[str, ...] = ROW_LOCK_WAITS,
                       timeout: float = 10.0) -> str:
    """Until the call's backend waits for a lock of one of these kinds; returns the kind.

    A call that returns instead never waited: it decided without the lock, which on the old code is
    itself the bug, so that is an assertion, with what the call returned.
    """
    deadline = time.monotonic() + timeout
    with database.connect() as observer:
        while True:
            row = observer.execute(
                """SELECT a.wait_event
                     FROM pg_stat_activity a
                    WHERE a.pid = %s AND a.wait_event_type = 'Lock'
                      AND EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)""",
                (call.pid,)).fetchone()
            if row is not None:
                assert row[0] in wait_events, f"{call.query!r} waits for a {row[0]} lock, not {wait_events}"
                return row[0]
            if call.finished:
                try:
                    returned: Any = call.outcome()
                except psycopg.Error as error:
                    returned = error
                raise AssertionError(f"returned without waiting: {call.query!r} gave {returned!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{call.query!r} neither waited for a lock nor returned")
            time.sleep(0.01)


def sleep_until_past(database: Database, moment) -> None:
    """Until the database's clock is past `moment` (a lease end). The one kind of sleep in this file."""
    while (left := database.one("SELECT extract(epoch FROM %s::timestamptz - clock_timestamp())::float8",
                                (moment,))) >= 0:
        time.sleep(left + 0.01)


def ensure_ahead(database: Database, moment) -> None:
    """The lease must still run when the call starts waiting, or the test proves nothing."""
    if not database.one("SELECT %s::timestamptz > clock_timestamp()", (moment,)):
        raise RuntimeError(f"the {SHORT_LEASE} lease ran out before the call waited: too slow a machine")


# --- the scene ---------------------------------------------------------------------------------


def stock_the_pool(database: Database, proxies: int = 4) -> None:
    database.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' "
                 "FROM generate_series(1, %s) n", (proxies,))


def add_task(database: Database, worker: str | None = None, table: str = "catalog_tasks") -> int:
    """A task; with a worker, claimed by it as the fleet claims (processing, heartbeat now)."""
    if worker is None:
        return database.one(sql.SQL("INSERT INTO {} (status) VALUES ('pending') RETURNING id")
                            .format(sql.Identifier(table)))
    return database.one(sql.SQL("INSERT INTO {} (status, worker_id, heartbeat_at) "
                                "VALUES ('processing', %s, now()) RETURNING id").format(sql.Identifier(table)),
                        (worker,))


def holder_of(database: Database, proxy: int) -> tuple:
    """(is_in_use, worker_id, lease_token, is_blocked, strike_count) of the proxy."""
    return database.one("SELECT is_in_use, worker_id, lease_token, is_blocked, strike_count FROM proxies WHERE id = %s",
                        (proxy,))


def event_mark(database: Database) -> int:
    return database.one("SELECT coalesce(max(id), 0) FROM proxy_lease_events")


def events_since(database: Database, mark: int) -> list[tuple]:
    """(proxy_id, event, reason, lease_token) of every event after the mark, in order."""
    return database.all("SELECT proxy_id, event, reason, lease_token FROM proxy_lease_events WHERE id > %s ORDER BY id",
                        (mark,))


def expire(database: Database, proxy: int) -> None:
    """Let the lease run out without sleeping, where no call is waiting meanwhile."""
    database.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 second' WHERE id = %s", (proxy,))


# What X does to the proxy row while the call waits. A lock that is only taken, or a write rolled
# back, leaves the row as it was, so PostgreSQL re-checks nothing after the wait: the case the old
# code got wrong most often. A committed write makes it re-check the row's new version.
X_LOCKS = {
    "X locks the row FOR NO KEY UPDATE": ("SELECT 1 FROM proxies WHERE id = %s FOR NO KEY UPDATE", "commit"),
    "X locks the row FOR UPDATE": ("SELECT 1 FROM proxies WHERE id = %s FOR UPDATE", "commit"),
    "X blocks the proxy, then rolls back": (
        "UPDATE proxies SET is_blocked = true, blocked_reason = 'operator: checking' WHERE id = %s", "rollback"),
    "X rotates the address and commits": (
        "UPDATE proxies SET address = address || '#rotated' WHERE id = %s", "commit"),
}


def while_x_holds_the_row(database: Database, proxy: int, x: str, call_query: str, params: Any,
                          leased_until=None) -> Background:
    """X takes the proxy row; the call starts and is seen waiting for it; if `leased_until` is
    given, the lease runs out meanwhile; then X ends as its kind says. Returns the finished call."""
    statement, ending = X_LOCKS[x]
    with database.connect(autocommit=False) as holder:
        holder.execute(statement, (proxy,))
        call = Background(database, call_query, params)
        try:
            wait_until_waiting(database, call)
            if leased_until is not None:
                ensure_ahead(database, leased_until)
                sleep_until_past(database, leased_until)
        except BaseException:
            holder.rollback()
            call.close()
            raise
        holder.commit() if ending == "commit" else holder.rollback()
    return call


# --- 1 and 2: acquire_proxy --------------------------------------------------------------------


def test_acquire_gives_back_no_proxy_blocked_while_it_waited(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c1_1")
    mark = event_mark(db)
    with db.connect(autocommit=False) as x:
        x.execute("UPDATE proxies SET is_blocked = true, blocked_reason = 'HTTP 403' WHERE id = %s", (proxy,))
        call = Background(db, "SELECT proxy_id, lease_token FROM acquire_proxy('c1_1')")
        wait_until_waiting(db, call)
        x.commit()
    granted = call.outcome()
    assert granted and granted[0][0] != proxy, f"acquire_proxy handed back proxy {proxy}, blocked while it waited"
    (new_proxy, new_token), = granted
    assert new_token != token
    assert holder_of(db, new_proxy)[:4] == (True, "c1_1", new_token, False)
    assert holder_of(db, proxy)[:4] == (False, None, None, True)
    assert events_since(db, mark)[:2] == [(proxy, "blocked", "direct_update", None),
                                          (proxy, "released", "blocked_while_held", token)]
    assert events_since(db, mark)[2:] == [(new_proxy, "granted", "acquired", new_token)]


def test_acquire_gives_back_the_same_grant_when_the_block_it_waited_for_rolls_back(db):
    """The control: X rolls back, nothing ran out, and the call acts as if it never waited."""
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c1_1")
    with db.connect(autocommit=False) as x:
        x.execute("UPDATE proxies SET is_blocked = true, blocked_reason = 'HTTP 403' WHERE id = %s", (proxy,))
        call = Background(db, "SELECT proxy_id, lease_token FROM acquire_proxy('c1_1')")
        wait_until_waiting(db, call)
        x.rollback()
    assert call.outcome() == [(proxy, token)]
    assert holder_of(db, proxy) == (True, "c1_1", token, False, 0)


@pytest.mark.parametrize("x", ["X locks the row FOR UPDATE", "X blocks the proxy, then rolls back"])
def test_acquire_gives_back_no_lease_that_ran_out_while_it_waited(db, x):
    stock_the_pool(db)
    proxy, _, token, leased_until = acquire(db, "c1_2", SHORT_LEASE)
    mark = event_mark(db)
    call = while_x_holds_the_row(db, proxy, x, "SELECT proxy_id, lease_token FROM acquire_proxy('c1_2')", None,
                                 leased_until=leased_until)
    (new_proxy, new_token), = call.outcome()
    assert new_token != token, f"acquire_proxy brought back lease {token}, which ran out while it waited"
    assert events_since(db, mark)[0] == (proxy, "released", "lease_expired", token)
    assert holder_of(db, proxy)[4] == 1, "a lease that ran out is a strike"
    assert holder_of(db, new_proxy)[:3] == (True, "c1_2", new_token)


# --- 3: renew, release, block on a lease that ran out while they waited ------------------------

RENEW_AND_RELEASE_X = ["X locks the row FOR NO KEY UPDATE", "X blocks the proxy, then rolls back",
                       "X rotates the address and commits"]


@pytest.mark.parametrize("x", RENEW_AND_RELEASE_X)
def test_renew_refuses_a_lease_that_ran_out_while_it_waited(db, x):
    stock_the_pool(db)
    proxy, _, token, leased_until = acquire(db, "c3_1", SHORT_LEASE)
    call = while_x_holds_the_row(db, proxy, x, "SELECT renew_proxy_lease(%s, %s, '3 seconds')", (proxy, token),
                                 leased_until=leased_until)
    try:
        renewed = call.outcome()
    except psycopg.Error as error:
        assert error.sqlstate == "LP001"
        assert "no longer holds" in error.diag.message_primary
        assert error.diag.message_detail.startswith("The lease ran out at ")
    else:
        raise AssertionError(f"renewed a lease that ran out while it waited, to {renewed[0][0]}")
    assert db.one("SELECT leased_until FROM proxies WHERE id = %s", (proxy,)) == leased_until


@pytest.mark.parametrize("x", RENEW_AND_RELEASE_X)
def test_release_leaves_a_lease_that_ran_out_while_it_waited_to_the_sweep(db, x):
    stock_the_pool(db)
    proxy, _, token, leased_until = acquire(db, "c3_2", SHORT_LEASE)
    call = while_x_holds_the_row(db, proxy, x, "SELECT release_proxy(%s, %s)", (proxy, token),
                                 leased_until=leased_until)
    assert call.outcome() == [(False,)], "released, as the worker's, a lease that ran out while it waited"
    assert holder_of(db, proxy)[:3] == (True, "c3_2", token)
    assert db.one("SELECT reason FROM stuck_proxies WHERE id = %s", (proxy,)) == "lease_expired"


@pytest.mark.parametrize("x", ["X locks the row FOR NO KEY UPDATE", "X rotates the address and commits"])
def test_block_records_the_ban_of_a_lease_that_ran_out_while_it_waited(db, x):
    """block_proxy v5: nobody was granted the proxy since, so the ban counts: released and blocked."""
    stock_the_pool(db)
    proxy, _, token, leased_until = acquire(db, "c3_3", SHORT_LEASE)
    mark = event_mark(db)
    call = while_x_holds_the_row(db, proxy, x, "SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')",
                                 (proxy, token), leased_until=leased_until)
    assert call.outcome() == [(True,)], "lost the ban of a lease that ran out while block_proxy waited"
    assert holder_of(db, proxy) == (False, None, None, True, 1)
    assert events_since(db, mark) == [(proxy, "released", "blocked_by_worker", token),
                                      (proxy, "blocked", "blocked_by_worker", None)]


# --- 4: a long sweep and a worker that claims a task meanwhile ---------------------------------

OWNER = "decide_after_lock_owner"
GATE_LOCK = 4242

# Row level security on catalog_tasks, with a policy that, in a session that SET test.gate = 'on',
# waits for an advisory lock the test holds. The sweep reads catalog_tasks through stuck_proxies
# with the rights of that view's owner; a superuser would skip the policy, hence the owner below
# (and FORCE, for the policy to bind the table's owner too).
# So the sweep stops inside its statement, after its snapshot and before it locks a proxy row.
GATE = f"""
CREATE FUNCTION public.test_sweep_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_setting('test.gate', true) = 'on' THEN
        PERFORM pg_advisory_lock_shared({GATE_LOCK});
        PERFORM pg_advisory_unlock_shared({GATE_LOCK});
    END IF;
    RETURN true;
END
$$;
ALTER TABLE public.catalog_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.catalog_tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY test_sweep_gate ON public.catalog_tasks USING (public.test_sweep_gate());
"""


@pytest.fixture
def owned_databases(fresh_database, pg_server) -> Iterator[Callable[..., Database]]:
    """Databases installed by `alembic upgrade head` as a NOSUPERUSER owner (test_pg_cron's way), the
    sweep gate in place. Used by the test sessions as the superuser, who bypasses the gate."""
    made: list[Database] = []

    def make(downgrade_to: str | None = None) -> Database:
        database = fresh_database()
        if not database.one("SELECT count(*) FROM pg_roles WHERE rolname = %s", (OWNER,)):
            # CREATEROLE: the install creates proxy_leases_worker and _operator if the server lacks them.
            database.run(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER CREATEROLE")
        database.run(f'ALTER DATABASE "{database.name}" OWNER TO {OWNER}')
        database.run(f"ALTER SCHEMA public OWNER TO {OWNER}")
        made.append(database)
        owner = Database(database.url.replace("postgres@", f"{OWNER}@"))
        owner.upgrade()
        if downgrade_to:
            owner.downgrade(downgrade_to)
        owner.run(GATE)
        assert not owner.one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        return database

    yield make
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        for database in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database.name)))
        if made:
            conn.execute(f"DROP ROLE IF EXISTS {OWNER}")


def test_a_long_sweep_leaves_a_worker_that_claimed_a_task_and_renewed_meanwhile(owned_databases, downgrade_to=None):
    db = owned_databases(downgrade_to)
    stock_the_pool(db)
    # c4_1 is busy: its task in processing is the row the sweep's task subquery reads, and stops on.
    # Its proxy comes first by id and by worker id, so the sweep stops there, whatever plan it uses,
    # before it reaches c4_3's proxy. c4_2 is a true orphan, which the sweep must still free. c4_3
    # holds its proxy past the grace with no task, and claims one while the sweep is stopped.
    busy, _, _, _ = acquire(db, "c4_1")
    add_task(db, "c4_1")
    orphan, _, orphan_token, _ = acquire(db, "c4_2")
    claimer, _, token, _ = acquire(db, "c4_3")
    task = add_task(db)
    past_the_grace(db)
    mark = event_mark(db)

    with db.connect() as gatekeeper:
        gatekeeper.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        sweeper = Background(db, "SELECT release_stuck_proxies()", setup=("SET test.gate = 'on'",))
        try:
            wait_until_waiting(db, sweeper, wait_events=("advisory",))
            with db.connect() as worker:
                # The sweep has locked no proxy yet: nothing the worker does here may wait.
                worker.execute("SET lock_timeout = '2s'")
                worker.execute("UPDATE catalog_tasks SET status = 'processing', worker_id = 'c4_3', "
                               "heartbeat_at = now() WHERE id = %s", (task,))
                worker.execute("SELECT renew_proxy_lease(%s, %s)", (claimer, token))
        finally:
            gatekeeper.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))
        freed = sweeper.outcome()[0][0]

    assert holder_of(db, claimer)[:3] == (True, "c4_3", token), \
        f"the sweep freed a worker that had claimed a task and renewed meanwhile: {events_since(db, mark)}"
    assert freed == 1
    assert events_since(db, mark) == [(orphan, "released", "orphaned", orphan_token)]
    assert holder_of(db, busy)[:2] == (True, "c4_1")


# --- 5: the fleet's REPEATABLE READ and SERIALIZABLE transactions ------------------------------

FLEET_WRITES = {
    "heartbeat": "UPDATE catalog_tasks SET heartbeat_at = now() WHERE id = %(task)s AND worker_id = 'c5_1'",
    "task exit": "UPDATE catalog_tasks SET status = 'done' WHERE id = %(task)s AND worker_id = 'c5_1'",
    "bulk requeue": "UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE status = 'processing'",
}


def fleet_transaction(db: Database, isolation: psycopg.IsolationLevel, write: str) -> dict:
    """c5_1 holds a proxy and a task in processing (c5_2 too, for the bulk requeue). A fleet
    transaction takes its snapshot; then another session renews c5_1's lease through the API;
    then the transaction writes the task and commits."""
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c5_1")
    task = add_task(db, "c5_1")
    other, _, other_token, _ = acquire(db, "c5_2")
    add_task(db, "c5_2")
    # A heartbeat renews once more than a tenth of lease_duration (5 minutes) has passed, and only the
    # first heartbeat of a renewal slot (a tenth too) tries: the task's last one goes back a slot.
    db.run("UPDATE proxies SET leased_until = clock_timestamp() + interval '1 minute' WHERE id = %s", (proxy,))
    db.run("UPDATE catalog_tasks SET heartbeat_at = heartbeat_at - interval '1 minute' WHERE id = %s", (task,))
    heartbeat_before = db.one("SELECT heartbeat_at FROM catalog_tasks WHERE id = %s", (task,))
    mark = event_mark(db)
    with db.connect(autocommit=False) as fleet:
        fleet.isolation_level = isolation
        fleet.execute("SELECT count(*) FROM catalog_tasks")  # the snapshot
        renewed_until = db.one("SELECT renew_proxy_lease(%s, %s, '2 minutes')", (proxy, token))
        fleet.execute(FLEET_WRITES[write], {"task": task})
        fleet.commit()
    return dict(proxy=proxy, token=token, task=task, other=other, other_token=other_token,
                renewed_until=renewed_until, heartbeat_before=heartbeat_before, mark=mark)


@pytest.mark.parametrize("isolation", [psycopg.IsolationLevel.REPEATABLE_READ, psycopg.IsolationLevel.SERIALIZABLE],
                         ids=["repeatable read", "serializable"])
@pytest.mark.parametrize("write", FLEET_WRITES)
def test_a_fleet_transaction_writes_its_task_though_the_lease_was_renewed_after_its_snapshot(db, write, isolation):
    scene = fleet_transaction(db, isolation, write)  # 0015: 40001 from the task trigger's proxy write
    proxy, token = scene["proxy"], scene["token"]
    if write == "heartbeat":
        # Not renewed by this heartbeat (the row changed after the snapshot): the API's renewal stands.
        assert db.one("SELECT heartbeat_at FROM catalog_tasks WHERE id = %s", (scene["task"],)) \
            > scene["heartbeat_before"]
        assert db.one("SELECT leased_until FROM proxies WHERE id = %s", (proxy,)) == scene["renewed_until"]
        return
    # The task left processing, but the proxy row changed after the snapshot: left to the sweep.
    assert db.one("SELECT status FROM catalog_tasks WHERE id = %s", (scene["task"],)) in ("done", "pending")
    assert holder_of(db, proxy)[:3] == (True, "c5_1", token)
    if write == "bulk requeue":   # c5_2's proxy did not change: freed by the requeue, as always
        assert events_since(db, scene["mark"]) == [(scene["other"], "released", "requeued", scene["other_token"])]
        assert holder_of(db, scene["other"])[:2] == (False, None)
    past_the_grace(db)
    assert sweep(db) == 1
    assert holder_of(db, proxy)[:2] == (False, None)


@pytest.mark.parametrize("write", FLEET_WRITES)
def test_at_read_committed_the_same_sequence_renews_and_frees_as_before(db, write):
    """The control: READ COMMITTED never had the 40001 and still renews or frees in the statement."""
    scene = fleet_transaction(db, psycopg.IsolationLevel.READ_COMMITTED, write)
    proxy, token = scene["proxy"], scene["token"]
    if write == "heartbeat":
        assert db.one("SELECT leased_until FROM proxies WHERE id = %s", (proxy,)) > scene["renewed_until"]
        return
    reason = "task_finished" if write == "task exit" else "requeued"
    assert holder_of(db, proxy)[:2] == (False, None)
    assert (proxy, "released", reason, token) in events_since(db, scene["mark"])


# --- 6: no deadlock between a transaction holding the worker's proxy row and a retried acquire --

FIRST_WRITES = {
    "task claim whose heartbeat renews": (
        "UPDATE catalog_tasks SET status = 'processing', worker_id = 'c6_1', heartbeat_at = now() WHERE id = %(task)s"),
    "renew_proxy_lease": "SELECT renew_proxy_lease(%(proxy)s, %(token)s)",
    "release_proxy": "SELECT release_proxy(%(proxy)s, %(token)s)",
    "task exit": "UPDATE catalog_tasks SET status = 'done' WHERE id = %(task)s",
}


@pytest.mark.parametrize("first_write", FIRST_WRITES)
def test_acquire_does_not_deadlock_with_a_transaction_that_locked_the_workers_proxy_then_acquires(db, first_write):
    stock_the_pool(db)
    # Under 90 % of lease_duration (5 minutes) left: the claim's heartbeat renews, locking the row.
    proxy, _, token, _ = acquire(db, "c6_1", "20 seconds")
    task = add_task(db, "c6_1") if first_write == "task exit" else add_task(db)
    with db.connect(autocommit=False) as session1:
        session1.execute("SET deadlock_timeout = '100ms'")
        session1.execute(FIRST_WRITES[first_write], {"task": task, "proxy": proxy, "token": token})
        # Session 1 has the proxy row now: renewed, or freed.
        assert session1.execute("SELECT leased_until > clock_timestamp() + interval '1 minute' OR NOT is_in_use "
                                "FROM proxies WHERE id = %s", (proxy,)).fetchone()[0]
        session2 = Background(db, "SELECT proxy_id, lease_token FROM acquire_proxy('c6_1')",
                              setup=("SET deadlock_timeout = '100ms'",))
        try:
            wait_until_waiting(db, session2)
            granted = session1.execute("SELECT proxy_id, lease_token FROM acquire_proxy('c6_1')").fetchall()
            session1.commit()
        except BaseException:
            session1.rollback()
            session2.close()
            raise
    assert session2.outcome() == granted
    if first_write in ("task claim whose heartbeat renews", "renew_proxy_lease"):
        assert granted == [(proxy, token)]
    else:   # session 1 gave the proxy back first: a new grant, which session 2 also returns
        assert granted and granted[0][1] != token


# --- 7: a ban lost in a race with the sweep ----------------------------------------------------


def test_a_ban_reported_after_the_sweep_freed_the_lease_still_blocks_the_proxy_once(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    expire(db, proxy)
    assert sweep(db) == 1                       # freed while the worker scraped
    strikes = holder_of(db, proxy)[4]
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True, \
        "lost the ban of a worker whose lease the sweep had freed"
    assert holder_of(db, proxy) == (False, None, None, True, strikes + 1)
    assert db.one("SELECT blocked_reason = 'HTTP 403' AND blocked_until > now() + interval '9 minutes' "
                  "FROM proxies WHERE id = %s", (proxy,))
    assert events_since(db, mark) == [(proxy, "blocked", "blocked_by_worker", None)]
    # A retry after a lost reply: true again, and no second strike or event.
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True
    assert holder_of(db, proxy) == (False, None, None, True, strikes + 1)
    assert len(events_since(db, mark)) == 1


def test_a_ban_from_a_grant_the_proxy_has_been_granted_again_since_changes_nothing(db):
    """The fence holds: the proxy was granted again after the caller's grant, so the caller's ban
    changes nothing, whether that newer grant still holds the proxy or has ended too."""
    stock_the_pool(db, proxies=1)
    proxy, _, token, _ = acquire(db, "c7_1")
    expire(db, proxy)
    assert sweep(db) == 1
    again, _, new_token, _ = acquire(db, "c7_2")
    assert again == proxy
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403')", (proxy, token)) is False
    assert holder_of(db, proxy) == (True, "c7_2", new_token, False, 1)
    assert events_since(db, mark) == []
    assert db.one("SELECT release_proxy(%s, %s)", (proxy, new_token)) is True
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403')", (proxy, token)) is False
    assert holder_of(db, proxy) == (False, None, None, False, 0)
    assert events_since(db, mark) == []


def test_a_retried_ban_counts_one_strike(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True, \
        "a retried ban returned false, as if the proxy had been granted again"
    assert holder_of(db, proxy) == (False, None, None, True, 1)
    assert events_since(db, mark) == []


@pytest.mark.parametrize("stuck", ["lease_expired", "orphaned"])
def test_a_ban_waiting_for_the_sweeps_lock_is_recorded_once_the_sweep_freed_the_proxy(db, stuck):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    if stuck == "lease_expired":
        expire(db, proxy)
    else:
        past_the_grace(db)   # no task in processing: orphaned, under a lease that still runs
    mark = event_mark(db)
    with db.connect(autocommit=False) as x:
        assert x.execute("SELECT release_stuck_proxies()").fetchone()[0] == 1
        call = Background(db, "SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token))
        wait_until_waiting(db, call)
        x.commit()
    assert call.outcome() == [(True,)], "lost the ban of a worker whose proxy the sweep was freeing"
    assert holder_of(db, proxy) == (False, None, None, True, 2)
    assert events_since(db, mark) == [(proxy, "released", stuck, token), (proxy, "blocked", "blocked_by_worker", None)]


def test_a_ban_waiting_for_a_sweep_that_rolls_back_releases_and_blocks_the_expired_grant(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    expire(db, proxy)
    mark = event_mark(db)
    with db.connect(autocommit=False) as x:
        assert x.execute("SELECT release_stuck_proxies()").fetchone()[0] == 1
        call = Background(db, "SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token))
        wait_until_waiting(db, call)
        x.rollback()
    assert call.outcome() == [(True,)]
    assert holder_of(db, proxy) == (False, None, None, True, 1)
    assert events_since(db, mark) == [(proxy, "released", "blocked_by_worker", token),
                                      (proxy, "blocked", "blocked_by_worker", None)]


def test_a_ban_waiting_for_a_release_by_update_is_recorded_on_the_freed_proxy(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    mark = event_mark(db)
    with db.connect(autocommit=False) as x:
        x.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s", (proxy,))
        call = Background(db, "SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token))
        wait_until_waiting(db, call)
        x.commit()
    assert call.outcome() == [(True,)], "lost the ban of a worker whose proxy was released while block_proxy waited"
    assert holder_of(db, proxy) == (False, None, None, True, 1)
    assert events_since(db, mark) == [(proxy, "released", "direct_update", token),
                                      (proxy, "blocked", "blocked_by_worker", None)]


def test_a_ban_on_a_lease_that_ran_out_but_is_not_swept_yet_releases_and_blocks(db):
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c7_1")
    expire(db, proxy)
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True, \
        "lost the ban of a worker whose lease ran out, not yet swept"
    assert holder_of(db, proxy) == (False, None, None, True, 1)
    assert events_since(db, mark) == [(proxy, "released", "blocked_by_worker", token),
                                      (proxy, "blocked", "blocked_by_worker", None)]


def test_a_ban_lasts_as_long_whether_or_not_the_sweep_freed_the_proxy_first(db):
    """Found while writing this file, in a first v5 that took any block in place for a retry of the
    same ban: the ban must not depend on whether the sweep came first.

    Two workers, the same story: an operator blocks the proxy they hold for a minute (an UPDATE, as
    the fleet's own code may), their leases run out, and each reports a 1-hour ban from the site. The sweep
    has freed the first one's proxy by then, not yet the second's.
    """
    stock_the_pool(db)
    swept, _, swept_token, _ = acquire(db, "c8_1")
    held, _, held_token, _ = acquire(db, "c8_2")
    db.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'operator: slow exit node', "
           "blocked_until = now() + interval '1 minute' WHERE id IN (%s, %s)", (swept, held))
    expire(db, swept)
    assert sweep(db) == 1
    expire(db, held)
    for proxy, token in ((swept, swept_token), (held, held_token)):
        assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403 from shop.example', '1 hour')", (proxy, token)) is True
    ban_ends = dict(db.all("SELECT id, blocked_until > now() + interval '59 minutes' FROM proxies "
                           "WHERE id IN (%s, %s)", (swept, held)))
    assert ban_ends[held], "not swept yet: the ban replaced the operator's minute"
    assert ban_ends[swept], "swept first: the operator's minute stands for the 1-hour ban block_proxy called done"


def test_a_ban_never_shortens_a_block_in_place(db):
    """An operator's open-ended block of a held proxy outlives any worker's cooldown: the later end
    wins. 0015 replaced it with the worker's cooldown."""
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c8_1")
    db.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'operator: exit node under review' "
           "WHERE id = %s", (proxy,))
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403', '10 minutes')", (proxy, token)) is True
    assert db.one("SELECT (blocked_until, blocked_reason) FROM proxies WHERE id = %s", (proxy,)) == \
        (None, "operator: exit node under review"), "the ban shortened the operator's open-ended block"


def test_a_late_ban_after_an_unblock_changes_nothing(db):
    """An unblock is a later word on the proxy than a ban of a grant that ended before it: a retry
    that arrives after the operator unblocked the proxy does not block it again."""
    stock_the_pool(db)
    proxy, _, token, _ = acquire(db, "c8_1")
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403')", (proxy, token)) is True
    assert db.one("SELECT unblock_proxy(%s)", (proxy,)) is True
    mark = event_mark(db)
    assert db.one("SELECT block_proxy(%s, %s, 'HTTP 403')", (proxy, token)) is False
    assert holder_of(db, proxy) == (False, None, None, False, 0)
    assert events_since(db, mark) == []


# --- every case on the old code ----------------------------------------------------------------


@dataclass
class OnTheOldCode:
    """How a test above ends on a database at 0015_input_checks."""

    test: Callable[..., None]
    variant: dict[str, Any] = field(default_factory=dict)
    fails_with: type[BaseException] | None = AssertionError   # None: 0015 did the same (a control)
    match: str | None = None                                  # words of the assertion it fails

    @property
    def id(self) -> str:
        words = self.test.__name__.removeprefix("test_")
        values = [getattr(value, "name", value) for value in self.variant.values()]   # an isolation level by name
        return "-".join([words, *map(str, values)])


RR, SER = psycopg.IsolationLevel.REPEATABLE_READ, psycopg.IsolationLevel.SERIALIZABLE

ON_THE_OLD_CODE = [
    OnTheOldCode(test_acquire_gives_back_no_proxy_blocked_while_it_waited, match="blocked while it waited"),
    OnTheOldCode(test_acquire_gives_back_the_same_grant_when_the_block_it_waited_for_rolls_back,
                 fails_with=None),   # a control
    *[OnTheOldCode(test_acquire_gives_back_no_lease_that_ran_out_while_it_waited, {"x": x}, match="ran out while")
      for x in ("X locks the row FOR UPDATE", "X blocks the proxy, then rolls back")],
    *[OnTheOldCode(test_renew_refuses_a_lease_that_ran_out_while_it_waited, {"x": x}, match="renewed a lease")
      for x in RENEW_AND_RELEASE_X],
    *[OnTheOldCode(test_release_leaves_a_lease_that_ran_out_while_it_waited_to_the_sweep, {"x": x},
                   match="released, as the worker's") for x in RENEW_AND_RELEASE_X if "rotates" not in x],
    # A committed write makes PostgreSQL re-check 0015's condition, clock_timestamp() included.
    OnTheOldCode(test_release_leaves_a_lease_that_ran_out_while_it_waited_to_the_sweep,
                 {"x": "X rotates the address and commits"}, fails_with=None),
    # 0015's block_proxy, waiting for a row that was only locked, re-checked nothing and blocked
    # the proxy anyway: by its own bug, the outcome v5 gives on purpose.
    OnTheOldCode(test_block_records_the_ban_of_a_lease_that_ran_out_while_it_waited,
                 {"x": "X locks the row FOR NO KEY UPDATE"}, fails_with=None),
    OnTheOldCode(test_block_records_the_ban_of_a_lease_that_ran_out_while_it_waited,
                 {"x": "X rotates the address and commits"}, match="lost the ban"),
    OnTheOldCode(test_a_long_sweep_leaves_a_worker_that_claimed_a_task_and_renewed_meanwhile,
                 {"downgrade_to": OLD}, match=r"meanwhile: .*\(3, 'released', 'orphaned', "),
    *[OnTheOldCode(test_a_fleet_transaction_writes_its_task_though_the_lease_was_renewed_after_its_snapshot,
                   {"write": write, "isolation": isolation}, fails_with=psycopg.errors.SerializationFailure)
      for write in FLEET_WRITES for isolation in (RR, SER)],
    *[OnTheOldCode(test_at_read_committed_the_same_sequence_renews_and_frees_as_before, {"write": write},
                   fails_with=None) for write in FLEET_WRITES],   # controls
    *[OnTheOldCode(test_acquire_does_not_deadlock_with_a_transaction_that_locked_the_workers_proxy_then_acquires,
                   {"first_write": first_write}, fails_with=psycopg.errors.DeadlockDetected)
      for first_write in FIRST_WRITES],
    OnTheOldCode(test_a_ban_reported_after_the_sweep_freed_the_lease_still_blocks_the_proxy_once, match="lost the ban"),
    OnTheOldCode(test_a_ban_from_a_grant_the_proxy_has_been_granted_again_since_changes_nothing,
                 fails_with=None),   # a control: the fence 0015 had too
    OnTheOldCode(test_a_retried_ban_counts_one_strike, match="retried ban returned false"),
    # lease_expired: 0015 judged the lease before the wait and returned false without waiting at all.
    OnTheOldCode(test_a_ban_waiting_for_the_sweeps_lock_is_recorded_once_the_sweep_freed_the_proxy,
                 {"stuck": "lease_expired"}, match="returned without waiting"),
    OnTheOldCode(test_a_ban_waiting_for_the_sweeps_lock_is_recorded_once_the_sweep_freed_the_proxy,
                 {"stuck": "orphaned"}, match="lost the ban"),
    OnTheOldCode(test_a_ban_waiting_for_a_sweep_that_rolls_back_releases_and_blocks_the_expired_grant,
                 match="returned without waiting"),
    OnTheOldCode(test_a_ban_waiting_for_a_release_by_update_is_recorded_on_the_freed_proxy, match="lost the ban"),
    OnTheOldCode(test_a_ban_on_a_lease_that_ran_out_but_is_not_swept_yet_releases_and_blocks, match="lost the ban"),
    # 0015 lost the swept worker's ban altogether (false); the held one replaced the minute.
    OnTheOldCode(test_a_ban_lasts_as_long_whether_or_not_the_sweep_freed_the_proxy_first, match="assert False is True"),
    OnTheOldCode(test_a_ban_never_shortens_a_block_in_place, match="shortened the operator's"),
    OnTheOldCode(test_a_late_ban_after_an_unblock_changes_nothing, fails_with=None),   # a control: 0015's fence
]


@pytest.mark.parametrize("case", ON_THE_OLD_CODE, ids=lambda case: case.id)
def test_each_case_on_the_old_code(db, owned_databases, case):
    if "owned_databases" in inspect.signature(case.test).parameters:
        run = lambda: case.test(owned_databases, **case.variant)   # installs and downgrades its own
    else:
        db.downgrade(OLD)
        assert db.one("SELECT version_num FROM proxy_leases_alembic_version") == OLD
        run = lambda: case.test(db, **case.variant)
    if case.fails_with is None:
        run()
        return
    with pytest.raises(case.fails_with, match=case.match):
        run()


NOT_CASES = {"test_each_case_on_the_old_code", "test_every_case_is_run_on_the_old_code"}


def test_every_case_is_run_on_the_old_code():
    cases = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    assert cases - NOT_CASES == {case.test.__name__ for case in ON_THE_OLD_CODE}
