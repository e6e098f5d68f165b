"""The lease API: acquire, renew, release and block, fenced by tokens; rotation; cooldowns."""

import threading

import psycopg
import pytest

from tests.helpers import acquire


@pytest.fixture
def pool(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    return db


def row(database, proxy_id):
    return database.one("SELECT is_in_use, worker_id, lease_token, leased_at, leased_until, released_at, "
                        "strike_count, is_blocked, blocked_until, blocked_reason FROM proxies WHERE id = %s",
                        (proxy_id,))


def lease_error(database, query, params):
    with pytest.raises(psycopg.Error) as raised:
        database.one(query, params)
    return raised.value


def test_acquire_grants_one_free_proxy_with_a_token_and_a_lease_from_the_settings(pool):
    proxy_id, address, token, leased_until = acquire(pool, "c1_1")
    assert (proxy_id, address) == (1, "http://10.0.0.1:3128")
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 1
    assert row(pool, 1)[:3] == (True, "c1_1", token) and row(pool, 1)[4] == leased_until
    assert pool.one("SELECT %s - clock_timestamp()", (leased_until,)).total_seconds() == pytest.approx(300, abs=2)
    assert acquire(pool, "c1_2", "90 seconds")[3] is not None
    assert pool.one("SELECT leased_until - clock_timestamp() FROM proxies WHERE worker_id = 'c1_2'"
                    ).total_seconds() == pytest.approx(90, abs=2)


def test_acquire_again_returns_the_same_grant_renewed_never_a_second_proxy(pool):
    first = acquire(pool, "c1_1", "1 minute")
    again = acquire(pool, "c1_1")
    assert again[:3] == first[:3]
    assert again[3] > first[3]
    assert pool.one("SELECT count(*) FROM proxies WHERE worker_id = 'c1_1'") == 1


def test_an_empty_pool_gives_no_row_and_blocked_proxies_are_never_handed_out(pool):
    pool.run("UPDATE proxies SET is_blocked = true WHERE id <= 3")
    granted = {acquire(pool, f"c1_{n}")[0] for n in range(2)}
    assert granted == {4, 5}
    assert acquire(pool, "c1_9") is None
    assert pool.one("SELECT count(*) FROM proxies WHERE is_blocked AND is_in_use") == 0


def test_the_pool_rotates_the_proxy_free_for_the_longest_goes_first(pool):
    grants = {n: acquire(pool, f"c1_{n}") for n in range(1, 6)}   # never used: by id
    assert [grants[n][0] for n in range(1, 6)] == [1, 2, 3, 4, 5]
    for n in (4, 2, 5):   # released in this order
        assert pool.one("SELECT release_proxy(%s, %s)", grants[n][:3:2]) is True
    assert [acquire(pool, f"c2_{n}")[0] for n in range(3)] == [4, 2, 5]


def test_every_grant_takes_a_larger_token_the_legacy_update_included(pool):
    tokens = []
    for n in range(3):
        proxy_id, _, token, _ = acquire(pool, f"c1_{n}")
        assert proxy_id == 1 or n > 0
        tokens.append(token)
        pool.run("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s", (proxy_id,))
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'legacy_1' WHERE id = 1")
    legacy_token = pool.one("SELECT lease_token FROM proxies WHERE id = 1")
    assert tokens == sorted(tokens) and len(set(tokens)) == 3 and legacy_token > tokens[-1]
    # A grant's token cannot be rewritten while it lasts, and any release clears it.
    pool.run("UPDATE proxies SET lease_token = 1 WHERE id = 1")
    assert pool.one("SELECT lease_token FROM proxies WHERE id = 1") == legacy_token
    pool.run("UPDATE proxies SET worker_id = NULL WHERE id = 1")
    assert row(pool, 1)[:3] == (False, None, None)


def test_renew_extends_the_current_grant_from_the_database_clock(pool):
    proxy_id, _, token, until = acquire(pool, "c1_1", "10 seconds")
    renewed = pool.one("SELECT renew_proxy_lease(%s, %s, '2 minutes')", (proxy_id, token))
    assert renewed > until
    assert pool.one("SELECT leased_until FROM proxies WHERE id = %s", (proxy_id,)) == renewed
    assert pool.one("SELECT renew_proxy_lease(%s, %s) - clock_timestamp()", (proxy_id, token)
                    ).total_seconds() == pytest.approx(300, abs=2)


@pytest.mark.parametrize("how_it_ended", ["expired", "released", "swept", "granted_again", "wrong_token"])
def test_a_token_that_no_longer_holds_renews_and_releases_nothing(pool, how_it_ended):
    proxy_id, _, token, _ = acquire(pool, "old_1")
    if how_it_ended == "expired":
        pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
    elif how_it_ended == "released":
        assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
    elif how_it_ended == "swept":
        pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
        assert pool.one("SELECT release_stuck_proxies()") == 1
    elif how_it_ended == "granted_again":
        pool.run("UPDATE proxies SET is_blocked = true WHERE id <> %s", (proxy_id,))
        pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
        assert pool.one("SELECT release_stuck_proxies()") == 1
        assert acquire(pool, "new_1")[0] == proxy_id
    else:
        token += 1000
    before = row(pool, proxy_id)

    error = lease_error(pool, "SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))
    assert error.sqlstate == "LP001"
    assert "no longer holds" in str(error) and error.diag.message_hint.startswith("Stop using this proxy")
    assert error.diag.message_detail
    assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is False
    assert row(pool, proxy_id) == before

    # A ban describes the proxy: it is recorded unless someone was granted the proxy since.
    blocked = pool.one("SELECT block_proxy(%s, %s, 'HTTP 403')", (proxy_id, token))
    if how_it_ended in ("granted_again", "wrong_token"):
        assert blocked is False
        assert row(pool, proxy_id) == before
    else:
        assert blocked is True
        assert pool.one("SELECT is_blocked, is_in_use, blocked_reason FROM proxies WHERE id = %s",
                        (proxy_id,)) == (True, False, "HTTP 403")


def test_renewing_an_unknown_proxy_says_so(pool):
    error = lease_error(pool, "SELECT renew_proxy_lease(999, 1)", None)
    assert error.sqlstate == "LP001" and "no proxy with that id" in error.diag.message_detail


@pytest.mark.parametrize("query, params", [
    ("SELECT * FROM acquire_proxy(%s)", ("no-number",)),
    ("SELECT * FROM acquire_proxy(%s)", ("a_b_1 ",)),
    ("SELECT * FROM acquire_proxy(%s)", ("%_1",)),
    ("SELECT * FROM acquire_proxy(%s)", (None,)),
    ("SELECT * FROM acquire_proxy('c1_1', %s)", ("-1 second",)),
    ("SELECT * FROM acquire_proxy('c1_1', %s)", ("0",)),
    ("SELECT renew_proxy_lease(1, %s)", (None,)),
    ("SELECT renew_proxy_lease(1, 1, %s)", ("0",)),
    ("SELECT release_proxy(%s, 1)", (None,)),
    ("SELECT block_proxy(1, 1, %s)", ("  ",)),
    ("SELECT block_proxy(1, 1, %s)", (None,)),
    ("SELECT block_proxy(1, 1, 'banned', %s)", ("-5 minutes",)),
    ("SELECT requeue_stale_tasks(%s)", ("0",)),
])
def test_bad_arguments_raise_22023_with_a_hint_and_change_nothing(pool, query, params):
    error = lease_error(pool, query, params)
    assert error.sqlstate == "22023"
    assert error.diag.message_hint
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use OR is_blocked") == 0


def test_acquire_gives_back_what_the_worker_holds_but_may_no_longer_use(pool):
    expired = acquire(pool, "c1_1")
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (expired[0],))
    fresh = acquire(pool, "c1_1")
    assert fresh[0] != expired[0] and fresh[2] > expired[2]
    assert row(pool, expired[0])[:2] == (False, None)
    pool.run("UPDATE proxies SET is_blocked = true WHERE id = %s", (fresh[0],))
    third = acquire(pool, "c1_1")
    assert third[0] not in (expired[0], fresh[0])
    assert row(pool, fresh[0])[:2] == (False, None) and row(pool, fresh[0])[7] is True
    assert pool.one("SELECT count(*) FROM proxies WHERE worker_id = 'c1_1'") == 1


def test_two_calls_for_one_worker_at_once_share_one_grant(pool):
    with pool.connect(autocommit=False) as first, pool.connect() as second:
        granted = first.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()
        results = []
        racer = threading.Thread(target=lambda: results.append(
            second.execute("SELECT * FROM acquire_proxy('c1_1')").fetchone()))
        racer.start()
        deadline = threading.Event()
        while not pool.one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            assert not deadline.wait(0.01) and racer.is_alive()
        first.commit()
        racer.join(timeout=10)
    assert results[0][:3] == granted[:3]
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 1


def test_block_with_a_cooldown_frees_and_blocks_then_the_maintenance_unblocks(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    assert pool.one("SELECT block_proxy(%s, %s, 'HTTP 403 from shop.example', '10 minutes')", (proxy_id, token))
    in_use, worker, lease_token, _, _, _, strikes, blocked, until, reason = row(pool, proxy_id)
    assert (in_use, worker, lease_token, strikes, blocked, reason) == (
        False, None, None, 1, True, "HTTP 403 from shop.example")
    assert pool.one("SELECT %s - clock_timestamp()", (until,)).total_seconds() == pytest.approx(600, abs=2)
    assert proxy_id not in {acquire(pool, f"c2_{n}")[0] for n in range(4)}

    with pool.connect() as conn:
        assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 0)
        conn.execute("UPDATE proxies SET blocked_until = clock_timestamp() - interval '1 ms' WHERE id = %s",
                     (proxy_id,))
        assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 1)
    assert row(pool, proxy_id)[6:] == (1, False, None, None)   # strikes stay until a clean release
    assert acquire(pool, "c3_1")[0] == proxy_id


def test_block_without_a_cooldown_lasts_until_unblock_proxy(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    assert pool.one("SELECT block_proxy(%s, %s, 'captcha wall')", (proxy_id, token)) is True
    with pool.connect() as conn:
        assert conn.execute("CALL run_lease_maintenance()").fetchone() == (0, 0, 0)
    assert row(pool, proxy_id)[7] is True
    assert pool.one("SELECT unblock_proxy(%s)", (proxy_id,)) is True
    assert row(pool, proxy_id)[6:] == (0, False, None, None)
    assert pool.one("SELECT unblock_proxy(%s)", (proxy_id,)) is False
    error = lease_error(pool, "SELECT unblock_proxy(999)", None)
    assert error.sqlstate == "P0002" and error.diag.message_hint


def test_one_call_grants_exactly_one_proxy_whatever_the_plan(pool):
    pool.run("INSERT INTO proxies (address) SELECT 'http://10.1.0.' || n || ':3128' FROM generate_series(1, 500) n")
    pool.run("ANALYZE proxies")
    for n in range(50):
        acquire(pool, f"c1_{n}")
        assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == n + 1
    plan = "\n".join(r[0] for r in pool.all(
        "EXPLAIN SELECT f.id FROM proxies f WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE "
        "ORDER BY f.released_at NULLS FIRST, f.id LIMIT 1 FOR UPDATE SKIP LOCKED"))
    assert "proxies_free_rotation_idx" in plan and "Sort" not in plan, plan


def test_a_task_heartbeat_does_not_bring_a_lease_that_ran_out_back_to_life(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_1', now())")
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() + interval '1 second'")
    assert pool.one("SELECT leased_until < clock_timestamp() FROM proxies WHERE id = %s", (proxy_id,)) is True
    assert lease_error(pool, "SELECT renew_proxy_lease(%s, %s)", (proxy_id, token)).sqlstate == "LP001"
    assert pool.one("SELECT reason FROM stuck_proxies") == "lease_expired"


def test_a_proxy_blocked_while_held_is_not_renewed_and_its_release_keeps_the_strikes(pool):
    proxy_id, _, token, _ = acquire(pool, "c1_1")
    pool.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'operator: abuse report', strike_count = 2 "
             "WHERE id = %s", (proxy_id,))
    error = lease_error(pool, "SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))
    assert error.sqlstate == "LP001" and "abuse report" in error.diag.message_detail
    pool.run("INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES ('processing', 'c1_1', now())")
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() + interval '10 seconds' WHERE id = %s", (proxy_id,))
    pool.run("UPDATE catalog_tasks SET heartbeat_at = now() + interval '1 second'")
    assert pool.one("SELECT leased_until < clock_timestamp() + interval '11 seconds' FROM proxies WHERE id = %s",
                    (proxy_id,)) is True
    assert pool.one("SELECT release_proxy(%s, %s)", (proxy_id, token)) is True
    assert row(pool, proxy_id)[6:8] == (2, True)


def test_a_grant_acquire_gives_back_because_its_lease_ran_out_counts_a_strike(pool):
    proxy_id, _, _, _ = acquire(pool, "c1_1")
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
    assert acquire(pool, "c1_1")[0] != proxy_id
    assert row(pool, proxy_id)[6] == 1


def test_a_proxy_held_under_a_live_lease_cannot_pass_to_another_worker_without_a_release(pool):
    proxy_id, _, token, _ = acquire(pool, "a_1")
    with pytest.raises(psycopg.errors.ObjectInUse) as refused:
        pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'legacy_7' WHERE id = %s", (proxy_id,))
    assert "held by a_1 under a live lease" in str(refused.value)
    assert "AND NOT is_in_use" in refused.value.diag.message_hint
    assert row(pool, proxy_id)[:3] == (True, "a_1", token)
    # Once the lease has run out the grant no longer holds, and the proxy may pass on.
    pool.run("UPDATE proxies SET leased_until = clock_timestamp() - interval '1 ms' WHERE id = %s", (proxy_id,))
    pool.run("UPDATE proxies SET is_in_use = true, worker_id = 'legacy_7' WHERE id = %s", (proxy_id,))
    assert row(pool, proxy_id)[1] == "legacy_7" and row(pool, proxy_id)[2] > token
    assert row(pool, proxy_id)[6] == 1   # taken from a holder whose lease ran out: a reclaim, a strike


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_acquire_refuses_a_snapshot_that_could_hide_the_workers_own_grant(pool, isolation):
    with pool.connect(autocommit=False) as conn:
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
            conn.execute("SELECT * FROM acquire_proxy('c1_1')")
    assert "READ COMMITTED" in str(refused.value) and refused.value.diag.message_hint
    assert pool.one("SELECT count(*) FROM proxies WHERE is_in_use") == 0
