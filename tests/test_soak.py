"""The crash soak, short: all 45 workers of examples/worker.py under a fault every ~0.5 s, maintenance from a
thread every 1.5 s, and a checker that must count no violation. Then the checker, fed broken states,
must count each kind (a checker that cannot fail proves nothing)."""

import time

from soak.checker import Checker
from soak.config import short_config
from soak.records import Records
from soak.run import run_soak

FAULT_KINDS = {"connection_kill", "worker_stop", "worker_pause", "container_crash", "ban"}


def test_a_short_soak_of_45_workers_under_faults_breaks_no_invariant(db):
    config = short_config(seconds=40, seed=6)
    started = time.monotonic()
    result = run_soak(db.url, config)
    took = time.monotonic() - started
    checker = result["checker"]
    print(f"\nshort soak: {took:.0f} s, {result['acquisitions']} acquisitions, faults {result['faults']}, "
          f"longest silent hold {checker['longest_silent_hold_s']:.1f} s (bound {checker['bound_s']:.1f} s), "
          f"violations {checker['violations']}, crashes {result['crash_causes']}, fenced out {result['fenced_out']}, "
          f"{checker['proofs_checked']} proofs checked, {checker['freed_silent_holds']} freed from silent workers, {checker['resumed_holds']} resumed, "
          f"renewals {result['renewals']}, released {checker['released_by_reason']}")
    for cause, trace in result["crash_tracebacks"].items():  # a killed connection is expected; anything else is shown
        if not cause.startswith(("AdminShutdown", "IdleInTransactionSessionTimeout")):
            print(cause, trace, sep="\n")
    assert checker["violations"] == {"I1": 0, "I2": 0, "I3": 0, "I4": 0, "I5": 0}, checker["examples"]
    assert result["errors"] == []
    # Workers die of the faults only: a connection killed or timed out, never of a bug or a missing right.
    assert [cause for cause in result["crash_causes"]
            if not cause.startswith(("AdminShutdown", "IdleInTransactionSessionTimeout", "OperationalError",
                                     "WorkerGone"))] == []
    assert "fenced_call_without_result" not in result["counters"]
    assert set(result["faults"]) == FAULT_KINDS and min(result["faults"].values()) >= 1, result["faults"]
    assert result["acquisitions"] >= 500
    assert result["releases"] >= 300 and result["blocks"] >= 1 and result["renewals"] >= 50
    assert checker["freed_silent_holds"] >= 5  # dead and paused workers held proxies, and were measured
    assert sum(result["fenced_out"].values()) >= 1  # some worker learned through a fenced call that it lost
    assert result["counters"]["maintenance_runs"] >= 10
    # Dead workers' proxies came back by every path: the task requeued (trigger), the lease run out (sweep),
    # the container restarted.
    assert {"requeued", "lease_expired", "container_restart"} <= set(checker["released_by_reason"])
    # Every grant was asked for by a worker with no right but proxy_leases_worker's.
    assert db.all("SELECT DISTINCT db_user FROM proxy_lease_events WHERE reason = 'acquired'") == [("soak_worker",)]


def grant(db, worker_id, proxy_id):
    db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = %s", (worker_id, proxy_id))


def test_the_checker_counts_each_invariant_it_is_shown_broken(db):
    db.run("INSERT INTO proxies (address) SELECT 'http://10.9.0.' || n FROM generate_series(1, 5) n")
    records = Records()
    checker = Checker(db.url, records, bound=1.0, lease=5.0)
    grant(db, "c9_1", 1)
    checker.sample()
    assert checker.violations.counts() == {"I1": 0, "I2": 0, "I3": 0, "I4": 0, "I5": 0}

    # I1: two workers both prove (by fenced calls that succeeded) that they held proxy 5 over the same second.
    now = time.time()
    first, second = records.add_worker("c9_10", "c9"), records.add_worker("c9_11", "c9")
    records.on_acquire(first, 5, 100, now - 3)
    records.on_acquire(second, 5, 101, now - 2)
    records.on_fenced(first, "renew", 5, 100, now - 1, True)
    records.on_fenced(second, "release", 5, 101, now, True)
    # I2: an operator blocks a held proxy (the trigger lets that through: "blocked while held").
    db.run("UPDATE proxies SET is_blocked = true WHERE id = 1")
    # I3: a worker dead for 10 s (bound 1 s) still holds proxy 2.
    dead = records.add_worker("c9_2", "c9")
    grant(db, "c9_2", 2)
    records.died(dead, time.time() - 10, "stopped")
    # I4: a proxy appears.
    db.run("INSERT INTO proxies (address) VALUES ('http://10.9.0.99')")
    # I5: rows the constraints let through with triggers off (session_replication_role = replica, as
    # superuser), but the trigger's rules forbid: strikes past quarantine on an unblocked proxy, a block
    # without blocked_at.
    with db.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE proxies SET strike_count = 7 WHERE id = 3")
        conn.execute("UPDATE proxies SET is_blocked = true, blocked_at = NULL WHERE id = 4")
    checker.sample()
    counts = checker.violations.counts()
    assert counts == {"I1": 1, "I2": 1, "I3": 1, "I4": 1, "I5": 2}, checker.violations.examples
    # At the end, the trail adds what it knows: proxy 5's tokens were never granted (I1), and a token
    # that goes down is caught from one sample to the next (I5).
    with db.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE proxies SET lease_token = lease_token - 1000 WHERE id = 1")
    # The trail itself: proxy 5 blocked, then granted twice with no release in between, the second time
    # with a lower token (I1 twice: overlap and token order, one event; I2: granted while blocked).
    db.run("INSERT INTO proxy_lease_events (proxy_id, event, reason, worker_id, lease_token, detail) VALUES "
           "(5, 'blocked', 'direct_update', NULL, NULL, 'test'), (5, 'granted', 'acquired', 'c9_20', 500, NULL), "
           "(5, 'granted', 'acquired', 'c9_21', 400, NULL)")
    # A sweep that frees a live lease: c9_30 renewed its grant of proxy 4 (lease 5 s) a second before
    # the trail says it was freed as expired. Its next renewal would be fenced out, so nothing overlaps.
    live = records.add_worker("c9_30", "c9")
    renewed = time.time()
    records.on_acquire(live, 4, 600, renewed - 1)
    records.on_fenced(live, "renew", 4, 600, renewed, True)
    records.on_fenced(live, "renew", 4, 600, renewed + 1.5, False)
    db.run("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason, worker_id, lease_token) VALUES "
           "(to_timestamp(%s), 4, 'granted', 'acquired', 'c9_30', 600), "
           "(to_timestamp(%s), 4, 'released', 'lease_expired', 'c9_30', 600)", (renewed - 1.001, renewed + 1))
    result = checker.finish()
    # I1: the live overlap, tokens 100 and 101 never granted in the trail, the second grant of proxy 5,
    # proxy 4's live lease freed as expired.
    assert result["violations"]["I1"] == 5, result["examples"]
    assert any("before the lease it renewed last ran out" in example for example in result["examples"]["I1"]), \
        result["examples"]["I1"]
    # I2: proxy 1 blocked and held, seen under its token and again under the token lowered by hand; both
    # grants of proxy 5 while blocked.
    assert result["violations"]["I2"] == 4, result["examples"]["I2"]
    assert result["violations"]["I5"] == 3, result["examples"]
