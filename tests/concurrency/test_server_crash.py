"""PostgreSQL itself killed under load (pg_ctl stop -m immediate) and started again on the same data
directory, twice: the crash soak (soak/) on a server of its own, with examples/worker.py's workers and
examples/async_worker.py's beside them, checked by the soak's independent checker. Then that checker's
crash checks, fed broken states, must count each kind (a check that cannot fail proves nothing).

The suite's shared server cannot be crashed (it serves every other test), so the first test starts its own.
"""

import time

import psycopg

from soak.checker import Checker
from soak.config import short_config
from soak.records import Records, ServerCrash
from soak.run import migrate_fleet_database, run_soak
from tools.harness import CRON_DATABASE, ThrowawayPostgres

NO_VIOLATION = {f"I{n}": 0 for n in range(1, 10)}
# What a worker may die of when the server goes away under it, or will not take it yet: its connection
# ended by the shutdown (AdminShutdown), lost or refused (OperationalError), or the server still starting
# (CannotConnectNow); or the soak's other faults (WorkerGone, IdleInTransactionSessionTimeout).
CONNECTION_LOST = ("AdminShutdown", "OperationalError", "CannotConnectNow", "WorkerGone",
                   "IdleInTransactionSessionTimeout")
ASYNC_CONNECTION_LOST = ("ConnectionRefusedError", "ConnectionResetError", "OSError",
                         "asyncpg.exceptions.ConnectionDoesNotExistError", "asyncpg.exceptions.AdminShutdownError",
                         "asyncpg.exceptions.CannotConnectNowError", "asyncpg.exceptions._base.InterfaceError")


def test_two_server_crashes_under_load_lose_no_committed_grant_and_tokens_keep_increasing():
    # 30 s of 45 workers and 3 async workers, a fault every ~0.5 s, the server killed at 8 s and at 18 s.
    config = short_config(seconds=30, seed=7, server_crash_at=(8.0, 18.0), async_workers=3)
    started = time.monotonic()
    # fsync=on: with the harness's fsync=off a crash of the server's processes would lose nothing committed
    # either (the OS page cache keeps the WAL they wrote), but a durable server is the one worth crashing.
    with ThrowawayPostgres(preload_pg_cron=True, settings=("fsync=on", "max_connections=300")) as pg:
        url = migrate_fleet_database(pg, config.sweep == "cron")
        result = run_soak(url, config, server=pg)
        with psycopg.connect(pg.url(CRON_DATABASE)) as conn:
            # pg_cron's scheduler is a background worker of the server: it must have come back with it. (The
            # short soak sweeps from a thread, so the upgrade scheduled no job of its own.)
            launchers = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                     "WHERE backend_type = 'pg_cron launcher'").fetchone()[0]
    took = time.monotonic() - started
    checker, crashes = result["checker"], result["checker"]["server_crashes"]
    print(f"\nserver crashes: {took:.0f} s in all, {result['acquisitions']} acquisitions, faults {result['faults']}, "
          f"violations {checker['violations']}, {checker['grants_checked_across_crashes']} grants checked across "
          f"crashes, longest reconnect wait {checker['longest_reconnect_wait_s']:.2f} s, "
          f"{checker['samples_lost_to_server_crashes']} samples lost, worker crashes {result['crash_causes']}, "
          f"async exits {result['async_exit_causes']}, pool at the end {checker['pool_at_end']}")
    for crash in crashes:
        print(f"  crash {crash}")
    assert checker["violations"] == NO_VIOLATION, checker["examples"]
    assert result["errors"] == []
    assert result["faults"]["server_crash"] == 2 and len(crashes) == 2, result["faults"]
    for crash in crashes:
        # There were committed grants to lose, an uncommitted one that must vanish, and workers to bring
        # back (the other faults leave one container up at least).
        assert crash["grants_checked"] >= 100, crash
        assert crash["probe_token"] is not None, crash
        assert crash["workers_live_at_kill"] >= 15 and crash["async_workers_live_at_kill"] == 3, crash
        # Every worker live at the kill, of both kinds, or the one in its place, made a call that succeeded
        # on the restarted server.
        assert crash["not_back"] == [] and 0 < crash["longest_reconnect_wait_s"] < 15, crash
        # The figures behind I8 were there to compare: tokens before, and the sequence and grants after.
        assert None not in (crash["tokens_before"], crash["next_token_when_checked"], crash["first_token_after"])
    # Every worker that died, died of its connection (or of the other faults), never of a bug; the async
    # workers' processes ended on their lost connections too, and came back (not_back covers their slots).
    assert [cause for cause in result["crash_causes"] if not cause.startswith(CONNECTION_LOST)] == []
    assert [cause for cause in result["async_exit_causes"] if not cause.startswith(ASYNC_CONNECTION_LOST)] == []
    assert checker["samples_lost_to_server_crashes"] >= 2  # the checker was cut off too, and reconnected
    pool = checker["pool_at_end"]
    assert pool["free_at_end"] + pool["blocked_at_end"] == config.proxies, pool
    assert launchers == 1


def test_the_checker_counts_each_crash_check_it_is_shown_broken(db):
    """I7, I8 and I9 on forged crashes, on the suite's server: nothing is killed here."""
    db.run("INSERT INTO proxies (address) SELECT 'http://10.9.0.' || n FROM generate_series(1, 6) n")
    db.run("INSERT INTO proxies (address) VALUES ('http://crash-probe-1:3128')")  # I7 (c): the probe's insert
    records = Records()
    checker = Checker(db.url, records, bound=1.0, lease=5.0)
    kept, lost, vanished, stopped, after = (records.add_worker(f"c9_{n}", "c9", f"c9/{n}") for n in range(1, 6))

    def acquire(worker):
        proxy, token = db.one("SELECT proxy_id, lease_token FROM acquire_proxy(%s)", (worker.worker_id,))
        records.on_acquire(worker, proxy, token, time.time())
        return proxy, token

    kept_grant, vanished_grant, stopped_grant = acquire(kept), acquire(vanished), acquire(stopped)
    records.on_acquire(lost, 6, 42, time.time())  # I7 (a): a grant the trail never had
    # Killed 2 s ago, its restarted server up now: what came before now was the old server's.
    crash = ServerCrash(1, time.time() - 2, worker_slots={"c9/1", "c9/5"}, async_slots=set(),
                        probe_worker="crashprobe_1", probe_address="http://crash-probe-1:3128")
    records.server_killed(crash)
    crash.dead_at = time.time()
    crash.sequence_after, crash.restarted_at = 0, time.time()
    records.server_back(crash, time.time())
    # Reconnect waits: c9_5's first call on the restarted server succeeds; c9_1's fails (c9/1 is not back).
    for worker, ok in ((kept, False), (after, True)):
        records.statement_sent(worker)
        records.statement_done(worker, time.time(), ok, sent_at=time.time())
    # I7 (b): the vanished grant's row freed behind the trail's back (no trigger, no event).
    with db.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL, leased_at = NULL, leased_until = NULL, "
                     "renewed_at = NULL, lease_token = NULL WHERE id = %s", (vanished_grant[0],))
    # I8 (a): the sequence came back below a token granted before the crash.
    db.run("SELECT setval('proxy_lease_token_seq', %s)", (kept_grant[1] - 1,))
    checker.sample()
    assert checker.violations.keys["I7"] == {(1, 6, 42), (1, *vanished_grant), (1, "uncommitted")}, \
        checker.violations.examples["I7"]
    assert checker.violations.keys["I8"] == {(1, "sequence")}, checker.violations.examples["I8"]
    assert crash.figures["grants_checked"] == 4 and crash.figures["tokens_before"] == max(
        kept_grant[1], vanished_grant[1], stopped_grant[1], 42)
    # I8 (b): after the restart c9_5 is granted a token from the lowered sequence.
    acquire(after)
    # I9: at the end, a proxy held by nobody of the run (which no container's release frees), and c9_4's
    # proxy still held although c9_4 stopped cleanly.
    nobody = db.one("UPDATE proxies SET is_in_use = true, worker_id = 'zz9_1' WHERE id = ("
                    "SELECT min(id) FROM proxies WHERE NOT is_in_use AND NOT is_blocked) RETURNING id")
    records.stopped_cleanly.add("c9_4")
    result = checker.finish()
    assert checker.violations.keys["I8"] == {(1, "sequence"), (1, "first token")}, result["examples"]["I8"]
    assert checker.violations.keys["I9"] == {(nobody, "holder"), (nobody, "after"), (stopped_grant[0], "holder")}, \
        result["examples"]["I9"]
    [figures] = result["server_crashes"]
    assert figures["not_back"] == ["c9/1"] and 2 <= figures["longest_reconnect_wait_s"] < 3, figures
    assert result["grants_checked_across_crashes"] == 4


def test_a_server_crash_pushes_back_i3s_bound_only_when_it_began_inside_it(db):
    """Nothing frees a proxy while the server is down: I3's bound moves to one sweep period after the server
    is back, for the holds whose bound was still running when the server was killed, and for no other."""
    db.run("INSERT INTO proxies (address) SELECT 'http://10.9.0.' || n FROM generate_series(1, 2) n")
    records = Records()
    checker = Checker(db.url, records, bound=8.0, lease=5.0)  # a lease of 5 s; sweep period + allowance 3 s
    now = time.time()
    for n, silent_for in ((1, 20), (2, 40)):
        worker = records.add_worker(f"c9_{n}", "c9", f"c9/{n}")
        db.run("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = %s", (worker.worker_id, n))
        records.died(worker, now - silent_for, "stopped")
    # Down from now - 15 to now - 1. c9_1's bound ran until now - 12: it moves to now - 1 + 3 = now + 2.
    # c9_2's had run out at now - 32, before the crash: it stays.
    crash = ServerCrash(1, now - 15, set(), set())
    records.server_killed(crash)
    records.server_back(crash, now - 1)
    checker.sample()
    assert {key[0] for key in checker.violations.keys["I3"]} == {"c9_2"}, checker.violations.examples["I3"]
    assert abs(checker.deadline(now - 20, now) - (now + 2)) < 1e-6
    # A hold seen free before the crash began was not pushed back by it.
    assert checker.deadline(now - 20, now - 16) == now - 12
