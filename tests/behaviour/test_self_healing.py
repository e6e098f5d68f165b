"""The scheduler gone, and leases that never end (0022_self_healing).

Nothing runs the maintenance in these databases: no pg_cron job, as when pg_cron is missing, paused, or
not yet back after a failover. acquire_proxy must then heal an exhausted pool by itself, freeing what
ran out as the sweep would; and no write may give a proxy a lease that hides it from that for ever.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import psycopg
import pytest

from tests.helpers import acquire

DEAD = ["d0dead01_1", "d0dead01_2", "d0dead02_1", "d0dead02_2", "d0dead03_1", "d0dead03_2"]


@pytest.fixture
def exhausted(db):
    """Six proxies, every one held by a dead worker whose lease ran out a second ago; no sweep has run."""
    db.run("INSERT INTO proxies (address) SELECT 'http://10.7.0.' || n || ':3128' FROM generate_series(1, 6) n")
    for worker in DEAD:
        acquire(db, worker)
    db.run("UPDATE proxies SET leased_until = now() - interval '1 second'")
    assert db.one("SELECT bool_and(leased_until < now()) FROM proxies")
    return db


def held_by(db) -> dict[int, str]:
    return dict(db.all("SELECT id, worker_id FROM proxies WHERE is_in_use ORDER BY id"))


def test_an_exhausted_pool_heals_at_the_next_acquire_with_no_sweep_at_all(exhausted):
    db = exhausted
    dead_grants = dict(db.all("SELECT id, lease_token FROM proxies"))
    held_before = held_by(db)
    assert db.one("SELECT count(*) FROM stuck_proxies") == 6 and db.one("SELECT free FROM proxy_pool_status") == 0

    proxy_id, _, token, _ = acquire(db, "a11ve001_1")

    # Freed as the sweep frees it (a strike, a released event with the sweep's reason), then granted anew.
    assert db.all("SELECT proxy_id, worker_id, lease_token FROM proxy_lease_events "
                  "WHERE event = 'released' AND reason = 'lease_expired'") == [
        (proxy_id, held_before[proxy_id], dead_grants[proxy_id])]
    assert db.one("SELECT strike_count FROM proxies WHERE id = %s", (proxy_id,)) == 1
    assert token > max(dead_grants.values())
    assert held_by(db) == {**held_before, proxy_id: "a11ve001_1"}      # one per call: the others are left alone
    assert db.one("SELECT leased_until > now() FROM proxies WHERE id = %s", (proxy_id,))
    # Fenced: the dead worker's token no longer holds, even if it wakes up.
    with pytest.raises(psycopg.Error) as refused:
        db.one("SELECT renew_proxy_lease(%s, %s)", (proxy_id, dead_grants[proxy_id]))
    assert refused.value.sqlstate == "LP001"

    # Each next caller takes over one more; once none is left that ran out, no row, as before.
    for n in range(2, 7):
        assert acquire(db, f"a11ve001_{n}") is not None
    assert set(held_by(db).values()) == {f"a11ve001_{n}" for n in range(1, 7)}
    assert db.one("SELECT count(*) FROM proxy_lease_events WHERE reason = 'lease_expired'") == 6
    assert acquire(db, "a11ve001_7") is None


def test_live_leases_are_never_reclaimed_and_the_call_returns_no_row(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.7.1.' || n || ':3128' FROM generate_series(1, 3) n")
    for n in range(1, 4):
        acquire(db, f"a11ve002_{n}")
    before = db.all("SELECT id, worker_id, lease_token, strike_count FROM proxies ORDER BY id")
    events = db.one("SELECT count(*) FROM proxy_lease_events")

    assert acquire(db, "a11ve002_9") is None
    assert db.all("SELECT id, worker_id, lease_token, strike_count FROM proxies ORDER BY id") == before
    assert db.one("SELECT count(*) FROM proxy_lease_events") == events


def test_a_free_proxy_is_taken_before_any_lease_that_ran_out_is_touched(exhausted):
    db = exhausted
    db.run("INSERT INTO proxies (address) VALUES ('http://10.7.0.99:3128')")
    proxy_id, *_ = acquire(db, "a11ve003_1")
    assert db.one("SELECT address FROM proxies WHERE id = %s", (proxy_id,)) == "http://10.7.0.99:3128"
    assert db.one("SELECT count(*) FROM proxy_lease_events WHERE event = 'released'") == 0


def test_a_take_over_that_quarantines_its_proxy_is_not_granted_and_the_call_goes_on(exhausted):
    """The strike can reach quarantine_after_strikes (3): that proxy is blocked, not granted, and the call goes
    on to the next that ran out. The search has no order: three of six are one strike from quarantine, so
    the call meets a clean one within its four."""
    db = exhausted
    ids = sorted(held_by(db))
    db.run("UPDATE proxies SET strike_count = 2 WHERE id = ANY(%s)", (ids[:3],))
    proxy_id, *_ = acquire(db, "a11ve004_1")
    assert proxy_id in ids[3:]
    assert db.one("SELECT strike_count, is_blocked FROM proxies WHERE id = %s", (proxy_id,)) == (1, False)
    quarantined = [proxy for proxy, in db.all(
        "SELECT id FROM proxies WHERE is_blocked AND blocked_reason LIKE 'quarantined after 3 strikes%' ORDER BY id")]
    assert set(quarantined) <= set(ids[:3])
    assert db.one("SELECT count(*) FROM proxy_lease_events WHERE event = 'released'") == len(quarantined) + 1


def test_at_most_four_are_taken_over_in_one_call(exhausted):
    """Every one that ran out is one strike from quarantine: the call quarantines four and gives up (no row);
    the next call quarantines the last two."""
    db = exhausted
    db.run("UPDATE proxies SET strike_count = 2")
    assert acquire(db, "a11ve004_2") is None
    assert db.one("SELECT count(*) FROM proxies WHERE is_blocked AND NOT is_in_use") == 4
    assert db.one("SELECT count(*) FROM proxies WHERE is_in_use AND NOT is_blocked") == 2
    assert acquire(db, "a11ve004_2") is None
    assert db.one("SELECT count(*) FROM proxies WHERE is_blocked AND NOT is_in_use") == 6


def test_a_blocked_proxy_whose_lease_ran_out_is_left_to_the_sweep(exhausted):
    """Blocked while held (an operator's ban): not a candidate, so it uses up none of the call's four."""
    db = exhausted
    ids = sorted(held_by(db))
    db.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'banned by hand' WHERE id = ANY(%s)", (ids[:5],))
    proxy_id, *_ = acquire(db, "a11ve004_3")
    assert proxy_id == ids[5]
    assert db.all("SELECT id, worker_id FROM proxies WHERE is_in_use ORDER BY id") == [
        *zip(ids[:5], DEAD[:5]), (ids[5], "a11ve004_3")]


def test_a_lease_that_ran_out_but_is_locked_is_skipped_without_waiting(exhausted):
    """Forced interleaving: a transaction has locked every dead worker's proxy but the last (a late renewal,
    say). acquire_proxy must not wait for them: under a lock_timeout of 1 s a wait would fail with 55P03.
    It takes over the one it can lock, and leaves the others alone."""
    db = exhausted
    ids = sorted(held_by(db))
    with db.connect(autocommit=False) as holder, db.connect() as caller:
        holder.execute("SELECT id FROM proxies WHERE id <> %s FOR UPDATE", (ids[-1],))
        caller.execute("SET lock_timeout = '1s'")
        take = "SELECT proxy_id FROM acquire_proxy(%s)"
        assert caller.execute(take, ("a11ve005_1",)).fetchone() == (ids[-1],)
        assert caller.execute(take, ("a11ve005_2",)).fetchone() is None  # everything else that ran out is locked
        holder.rollback()
    assert db.one("SELECT count(*) FROM proxy_lease_events WHERE event = 'released'") == 1
    assert acquire(db, "a11ve005_2") is not None      # once the holder is gone, the next one is taken over


def test_a_lease_renewed_while_the_reclaim_waits_on_nothing_is_kept(exhausted):
    """Forced interleaving: a worker renews its lease (row locked, not yet committed) as another worker finds
    the pool empty. The call skips that row; once the renewal commits, the proxy is the renewer's, live."""
    db = exhausted
    ids = sorted(held_by(db))
    token = db.one("SELECT lease_token FROM proxies WHERE id = %s", (ids[0],))
    db.run("UPDATE proxies SET leased_until = now() + interval '1 minute' WHERE id <> %s", (ids[0],))
    with db.connect(autocommit=False) as renewer:
        renewer.execute("UPDATE proxies SET leased_until = now() + interval '5 minutes' WHERE id = %s", (ids[0],))
        assert acquire(db, "a11ve006_1") is None
        renewer.commit()
    assert db.one("SELECT worker_id, lease_token, leased_until > now() FROM proxies WHERE id = %s",
                  (ids[0],)) == (DEAD[0], token, True)


def test_the_fleets_asyncpg_worker_gets_a_proxy_from_a_pool_only_dead_workers_hold(exhausted):
    """As the fleet calls it (asyncpg, its lease as a timedelta), with no scheduler anywhere."""
    async def take() -> asyncpg.Record:
        connection = await asyncpg.connect(exhausted.url)
        try:
            return await connection.fetchrow("SELECT * FROM acquire_proxy($1)", "a11ve007_1")
        finally:
            await connection.close()

    grant = asyncio.run(take())
    assert grant is not None and grant["lease_token"] > 0
    assert held_by(exhausted)[grant["proxy_id"]] == "a11ve007_1"


def test_concurrent_callers_on_an_exhausted_pool_never_share_a_proxy(exhausted):
    """Six callers at once, each in its own session, race for the six proxies the dead left."""
    db = exhausted
    grants: list = []
    barrier = threading.Barrier(6)

    def call(n: int) -> None:
        with db.connect() as conn:
            barrier.wait()
            grants.append(conn.execute("SELECT proxy_id, lease_token FROM acquire_proxy(%s)",
                                       (f"a11ve008_{n}",)).fetchone())

    threads = [threading.Thread(target=call, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    taken = [grant for grant in grants if grant is not None]
    assert len({proxy for proxy, _ in taken}) == len(taken) == 6
    assert len(set(held_by(db).values()) - set(DEAD)) == len(taken)
    assert db.one("SELECT count(*) FROM proxy_lease_events WHERE reason = 'lease_expired'") == 6


# Leases have an end -------------------------------------------------------------------------------------


@pytest.fixture
def holder(db):
    db.run("INSERT INTO proxies (address) VALUES ('http://10.7.2.1:3128'), ('http://10.7.2.2:3128')")
    proxy_id, _, token, _ = acquire(db, "b0und001_1")
    return db, proxy_id, token


@pytest.mark.parametrize("lease_end, shown, why", [
    ("'infinity'", "infinity", "further ahead than longest_lease (1 day)"),
    ("'3000-01-01 00:00+00'", "3000-01-01", "further ahead than longest_lease (1 day)"),
    ("now() + interval '1 day 1 minute'", "", "further ahead than longest_lease (1 day)"),
    ("'-infinity'", "-infinity", "a lease ends at a time"),
])
def test_no_direct_update_gives_a_lease_that_never_ends(holder, lease_end, shown, why):
    db, proxy_id, token = holder
    before = db.all("SELECT * FROM proxies ORDER BY id")
    with pytest.raises(psycopg.Error) as refused:
        db.run(f"UPDATE proxies SET leased_until = {lease_end} WHERE id = %s", (proxy_id,))
    error = refused.value.diag
    assert refused.value.sqlstate == "23514"
    assert error.message_primary.startswith(f"proxy {proxy_id} cannot be leased until {shown}")
    assert error.message_primary.endswith(why)
    assert "longest_lease" in error.message_hint and error.column_name == "leased_until"
    assert db.all("SELECT * FROM proxies ORDER BY id") == before


def test_a_held_row_inserted_with_a_far_lease_end_is_refused(db):
    with pytest.raises(psycopg.Error, match="cannot be leased until infinity") as refused:
        db.run("INSERT INTO proxies (address, is_in_use, worker_id, leased_until) "
               "VALUES ('http://10.7.2.9:3128', true, 'b0und001_9', 'infinity')")
    assert refused.value.sqlstate == "23514" and db.one("SELECT count(*) FROM proxies") == 0


def test_a_legacy_take_over_of_a_lease_that_ran_out_gets_the_default_lease_not_the_old_end(holder):
    """The UPDATE names a new worker and no lease end: the old one is not carried over, whatever it was."""
    db, proxy_id, _ = holder
    db.run("UPDATE proxies SET leased_until = now() - interval '1 second' WHERE id = %s", (proxy_id,))
    db.run("UPDATE proxies SET worker_id = 'b0und001_8' WHERE id = %s", (proxy_id,))
    assert db.one("SELECT worker_id, leased_until - now() BETWEEN interval '4 minutes' AND interval '5 minutes' "
                  "FROM proxies WHERE id = %s", (proxy_id,)) == ("b0und001_8", True)


def test_a_legacy_grant_with_a_far_lease_end_is_refused_and_the_proxy_stays_free(holder):
    db, _, _ = holder
    free = db.one("SELECT id FROM proxies WHERE NOT is_in_use")
    with pytest.raises(psycopg.Error, match="further ahead than longest_lease") as refused:
        db.run("UPDATE proxies SET is_in_use = true, worker_id = 'b0und001_2', leased_until = '3000-01-01' "
               "WHERE id = %s", (free,))
    assert refused.value.sqlstate == "23514"
    assert db.one("SELECT is_in_use FROM proxies WHERE id = %s", (free,)) is False


def test_the_api_refuses_a_lease_beyond_longest_lease_and_grants_one_up_to_it(holder):
    db, proxy_id, token = holder
    with pytest.raises(psycopg.Error, match="lease is too long") as too_long:
        acquire(db, "b0und001_3", "1 day 1 second")
    assert too_long.value.sqlstate == "22023" and "longest_lease, 1 day" in too_long.value.diag.message_detail
    with pytest.raises(psycopg.Error, match="lease is too long") as renewal:
        db.one("SELECT renew_proxy_lease(%s, %s, '2 days')", (proxy_id, token))
    assert renewal.value.sqlstate == "22023" and "longest_lease, 1 day" in renewal.value.diag.message_detail
    _, _, _, leased_until = acquire(db, "b0und001_3", "1 day")
    assert db.one("SELECT %s - now() BETWEEN interval '23 hours 59 minutes' AND interval '1 day'", (leased_until,))
    # A longer bound allows longer leases, and no setting may leave the default lease outside it.
    db.run("UPDATE proxy_lease_settings SET longest_lease = '7 days'")
    assert db.one("SELECT renew_proxy_lease(%s, %s, '2 days') > now() + interval '47 hours'", (proxy_id, token))
    with pytest.raises(psycopg.Error, match="longest_lease must be at least an hour and not shorter than lease_duration"):
        db.run("UPDATE proxy_lease_settings SET lease_duration = '8 days'")


def test_the_upgrade_cuts_a_lease_that_would_never_end_to_the_bound_and_frees_nothing(fresh_database):
    database = fresh_database()
    database.upgrade("0021_maintenance_health")
    database.run("INSERT INTO proxies (address) VALUES ('http://10.7.3.1:3128'), ('http://10.7.3.2:3128')")
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'b0und002_' || id")
    database.run("UPDATE proxies SET leased_until = 'infinity' WHERE id = (SELECT min(id) FROM proxies)")
    tokens = database.all("SELECT id, worker_id, lease_token FROM proxies ORDER BY id")
    database.upgrade()
    assert database.all("SELECT id, worker_id, lease_token FROM proxies ORDER BY id") == tokens
    assert database.one("SELECT bool_and(leased_until <= now() + interval '1 day') FROM proxies")
    assert database.one("SELECT leased_until > now() + interval '23 hours' FROM proxies WHERE id = %s",
                        (tokens[0][0],))
    assert database.one("SELECT count(*) FROM proxy_lease_events WHERE event = 'released'") == 0
    database.downgrade("0021_maintenance_health")
    assert database.one("SELECT count(*) FROM information_schema.columns WHERE column_name = 'longest_lease'") == 0
    database.run("UPDATE proxies SET leased_until = 'infinity' WHERE id = %s", (tokens[0][0],))  # 0021 allowed it


def test_a_fleet_whose_lease_duration_is_longer_than_a_day_upgrades_with_that_bound(fresh_database):
    """0021 allowed a lease_duration of up to 100 years: the bound starts at it, so nothing granted today is refused."""
    database = fresh_database()
    database.upgrade("0021_maintenance_health")
    database.run("UPDATE proxy_lease_settings SET lease_duration = '3 days'")
    database.run("INSERT INTO proxies (address) VALUES ('http://10.7.3.3:3128')")
    database.run("UPDATE proxies SET is_in_use = true, worker_id = 'b0und003_1', leased_until = now() + interval '2 days'")
    database.upgrade()
    assert database.one("SELECT longest_lease FROM proxy_lease_settings").days == 3
    assert database.one("SELECT leased_until > now() + interval '47 hours' FROM proxies")   # not cut
    assert database.one("SELECT * FROM acquire_proxy('b0und003_2')") is None              # the one proxy is held
    database.run("INSERT INTO proxies (address) VALUES ('http://10.7.3.4:3128')")
    assert database.one("SELECT leased_until > now() + interval '71 hours' FROM acquire_proxy('b0und003_2')")
