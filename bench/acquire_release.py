"""Acquisitions per second of acquire_proxy + release_proxy, by threads and pool size.

    .venv/bin/python bench/acquire_release.py [--seconds N] [--quick] [--without-audit] [--revision REV]

A throwaway PostgreSQL migrated to head. Each thread has its own autocommit psycopg connection and
worker id (bench_<n>) and loops `SELECT * FROM acquire_proxy(id)` then `SELECT release_proxy(proxy,
token)`, for 1, 4 and 16 threads on three pools: 1,000 free proxies; 8 proxies (fewer than the
threads: a thread that gets no row retries at once, counted as an empty attempt); 1,000,000 proxies
(100,000 with --quick), with the EXPLAIN of acquire_proxy's pick before and after. Last, the
fleet's legacy UPDATE pair with 16 threads on 1,000 proxies. Each run has a short warm-up, then N
seconds measured; latencies are those of acquires that granted a proxy. The invariants are checked
at the end: every proxy free, every release accepted, grants == advance of proxy_lease_token_seq,
and, where the audit trail is installed and on, 2 events in proxy_lease_events per grant.

--without-audit disables the audit triggers on proxies (record_lease_events and its _on_insert and
_on_delete siblings) after the upgrade, so the same runs show what the audit trail costs: only the
event inserts; acquire_proxy v2's give-back UPDATEs, set_config calls and renewed_at stay.
--revision migrates to an older revision instead of head (e.g. 0009_maintenance_schedule, the last
one before the audit trail), for the whole cost of 0010_lease_events.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.harness import SERVER_SETTINGS, Harness  # noqa: E402

PICK = ("SELECT f.id FROM proxies f WHERE NOT f.is_in_use AND f.is_blocked IS NOT TRUE "
        "ORDER BY f.released_at NULLS FIRST, f.id LIMIT 1 FOR UPDATE SKIP LOCKED")
LEGACY_ACQUIRE = ("UPDATE proxies SET is_in_use = true, worker_id = %s WHERE id = (SELECT id FROM proxies "
                  "WHERE NOT is_in_use AND NOT is_blocked LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id")
LEGACY_RELEASE = "UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = %s"
WAITS = ("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
         "WHERE application_name = 'bench' AND state = 'active'")


class Run:
    """One configuration: threads hammering acquire/release until the clock runs out."""

    def __init__(self, url: str, threads: int, legacy: bool) -> None:
        self.url, self.threads, self.legacy = url, threads, legacy
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.acquired = self.empty = self.grants = self.refused_releases = 0
        self.waits: collections.Counter[str] = collections.Counter()

    def worker(self, n: int, ready: threading.Barrier, measure_from: list[float], stop_at: list[float]) -> None:
        latencies, acquired, empty, grants, refused = [], 0, 0, 0, 0
        with psycopg.connect(self.url, autocommit=True, application_name="bench") as conn:
            ready.wait()
            worker_id = f"bench_{n}"
            while (now := time.perf_counter()) < stop_at[0]:
                measured = now >= measure_from[0]
                if self.legacy:
                    row = conn.execute(LEGACY_ACQUIRE, (worker_id,)).fetchone()
                else:
                    row = conn.execute("SELECT * FROM acquire_proxy(%s)", (worker_id,)).fetchone()
                took = time.perf_counter() - now
                if row is None:
                    empty += measured
                    continue
                grants += 1
                if measured:
                    acquired += 1
                    latencies.append(took * 1000)
                if self.legacy:
                    refused += conn.execute(LEGACY_RELEASE, (row[0],)).rowcount != 1
                else:
                    refused += not conn.execute("SELECT release_proxy(%s, %s)", (row[0], row[2])).fetchone()[0]
        with self.lock:
            self.latencies += latencies
            self.acquired += acquired
            self.empty += empty
            self.grants += grants
            self.refused_releases += refused

    def sample_waits(self, conn: psycopg.Connection, measure_from: float, stop_at: float) -> None:
        """What the busy bench backends wait on, sampled every 20 ms while measuring."""
        while (now := time.perf_counter()) < stop_at:
            if now >= measure_from:
                self.waits.update(row[0] for row in conn.execute(WAITS))
            time.sleep(0.02)

    def go(self, seconds: float, warmup: float) -> "Run":
        ready = threading.Barrier(self.threads + 1)
        measure_from, stop_at = [float("inf")], [float("inf")]
        workers = [threading.Thread(target=self.worker, args=(n, ready, measure_from, stop_at))
                   for n in range(1, self.threads + 1)]
        for thread in workers:
            thread.start()
        ready.wait()
        measure_from[0] = time.perf_counter() + warmup
        stop_at[0] = measure_from[0] + seconds
        self.seconds = seconds
        with psycopg.connect(self.url, autocommit=True) as monitor:
            self.sample_waits(monitor, measure_from[0], stop_at[0])
        for thread in workers:
            thread.join()
        return self

    def line(self, pool: str) -> str:
        lat = sorted(self.latencies) or [float("nan")]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        total = sum(self.waits.values()) or 1
        waits = ", ".join(f"{name} {count / total:.0%}" for name, count in self.waits.most_common(3))
        return (f"{self.threads:>7} | {pool:<22} | {self.acquired / self.seconds:>10,.0f} | "
                f"{statistics.median(lat):>8.3f} | {p99:>8.3f} | {self.empty:>10,} | {waits}")


def load_pool(conn: psycopg.Connection, size: int) -> float:
    started = time.perf_counter()
    conn.execute("TRUNCATE proxies RESTART IDENTITY")
    conn.execute("INSERT INTO proxies (address) SELECT 'http://p' || n || ':3128' FROM generate_series(1, %s) n",
                 (size,))
    conn.execute("VACUUM ANALYZE proxies")
    return time.perf_counter() - started


def explain_pick(conn: psycopg.Connection, title: str) -> None:
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of acquire_proxy's pick, {title}:")
    with conn.transaction(force_rollback=True):
        for (line,) in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {PICK}"):
            print(f"    {line}")


def tokens_drawn(conn: psycopg.Connection) -> int:
    last, called = conn.execute("SELECT last_value, is_called FROM proxy_lease_token_seq").fetchone()
    return last if called else last - 1


def events_recorded(conn: psycopg.Connection) -> int | None:
    """Rows in proxy_lease_events, or None where the revision has no audit trail."""
    if conn.execute("SELECT to_regclass('public.proxy_lease_events')").fetchone()[0] is None:
        return None
    return conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run (5; 0.6 --quick)")
    parser.add_argument("--quick", action="store_true", help="short runs and a 100,000-proxy big table")
    parser.add_argument("--without-audit", action="store_true",
                        help="disable the audit triggers on proxies (record_lease_events*) after the upgrade")
    parser.add_argument("--revision", default="head",
                        help="the revision to migrate to (head; e.g. 0009_maintenance_schedule: before the audit trail)")
    args = parser.parse_args()
    seconds = args.seconds or (0.6 if args.quick else 5.0)
    warmup = 0.2 if args.quick else 1.0
    big = 100_000 if args.quick else 1_000_000
    started = time.perf_counter()

    print(f"os.cpu_count() = {os.cpu_count()}: client threads (Python, one GIL) and the server share these cores")
    rows, invariants = [], []
    # Without fsync, as the figures these scripts recorded were taken; bench/run.py's scenarios keep it on.
    with Harness(quick=args.quick, settings=(*SERVER_SETTINGS, "fsync=off")) as harness:
        url = harness.database("bench", args.revision)
        with psycopg.connect(url, autocommit=True) as conn:
            audit = events_recorded(conn) is not None
            if args.without_audit:
                if not audit:
                    sys.exit(f"--without-audit: revision {args.revision} has no audit trail to disable")
                for trigger in ("record_lease_events", "record_lease_events_on_insert", "record_lease_events_on_delete"):
                    conn.execute(f"ALTER TABLE proxies DISABLE TRIGGER {trigger}")
            print(f"migrated to {args.revision}; audit trail: "
                  f"{'none at this revision' if not audit else 'DISABLED' if args.without_audit else 'on'}")
            print(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} (fsync=off), "
                  f"{seconds:g} s measured per run after {warmup:g} s of warm-up")
            plan = [("1,000 proxies", 1000, False), ("8 proxies", 8, False),
                    (f"{big:,} proxies", big, False), ("1,000 proxies, LEGACY", 1000, True)]
            for label, size, legacy in plan:
                took = load_pool(conn, size)
                if size == big:
                    print(f"\nloaded {size:,} proxies (INSERT ... generate_series, VACUUM ANALYZE) in {took:.1f} s")
                    explain_pick(conn, f"{size:,} proxies, freshly vacuumed")
                tokens_before = tokens_drawn(conn)
                events_before = events_recorded(conn)
                runs = [Run(url, threads, legacy).go(seconds, warmup) for threads in ((16,) if legacy else (1, 4, 16))]
                rows += [run.line(label) for run in runs]
                if size == big:
                    explain_pick(conn, f"{size:,} proxies, after the runs above (no VACUUM since)")
                held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use OR worker_id IS NOT NULL "
                                    "OR lease_token IS NOT NULL").fetchone()[0]
                grants = sum(run.grants for run in runs)
                drawn = tokens_drawn(conn) - tokens_before
                refused = sum(run.refused_releases for run in runs)
                ok = held == 0 and grants == drawn and refused == 0
                events = ""
                if events_before is not None:
                    added = events_recorded(conn) - events_before
                    ok = ok and added == (0 if args.without_audit else 2 * grants)
                    events = f", {added:,} events recorded"
                invariants.append(f"{'ok  ' if ok else 'FAIL'} {label:<22}: {held} proxies held at the end, "
                                  f"{refused} releases refused, {grants:,} grants, "
                                  f"{drawn:,} tokens drawn from proxy_lease_token_seq{events}")

    print("\n threads | pool                   | acquires/s | p50 (ms) | p99 (ms) |      empty | "
          "busy backends' wait events (sampled)")
    print("-" * 8 + "+" + "-" * 24 + "+" + "-" * 12 + "+" + "-" * 10 + "+" + "-" * 10 + "+" + "-" * 12 + "+" + "-" * 36)
    for row in rows:
        print(row)
    print("acquires/s counts grants in the measured window (each followed by its release); p50/p99 are the "
          "acquire statement's round trip;\nempty = acquire attempts that got no proxy (retried at once). "
          "LEGACY = the fleet's old UPDATE pair, run on the migrated schema (its triggers fire).")
    print("\ninvariants (all runs, warm-up included):")
    for line in invariants:
        print(f"  {line}")
    print(f"\ntotal runtime {time.perf_counter() - started:.1f} s")
    if not all(line.startswith("ok") for line in invariants):
        sys.exit(1)


if __name__ == "__main__":
    main()
