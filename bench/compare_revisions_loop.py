"""The hot paths' server cost at two Alembic revisions, without the client: a procedure calls them in a loop.

    .venv/bin/python bench/compare_revisions_loop.py --source /tmp/snapshot --rounds 15 --seconds 3
    .venv/bin/python bench/compare_revisions_loop.py --new 0015_input_checks   # A/A control: same revision twice

pgbench at one or two clients on a small virtual machine measures, above all, how fast the
machine wakes a process up: the same run varies by 2x from one minute to the next. Here one session
runs a PL/pgSQL procedure that repeats a cycle and COMMITs after each statement, as the fleet's
calls would each be a transaction, and times each statement with clock_timestamp(): what is left
is the server's work per call (plans cached) and its commit. Same databases and data as
bench/compare_revisions.py; the two revisions alternate, every round, for ``--seconds`` each, so
that each pair of runs is a few seconds apart.

  acquire_release        acquire_proxy('bench_0'), COMMIT, release_proxy(...), COMMIT
  heartbeat              UPDATE catalog_tasks SET heartbeat_at (no renewal due), COMMIT
  heartbeat_renewal_due  the lease end moved back to 1 min ahead, COMMIT, the heartbeat (renews), COMMIT
  renew                  renew_proxy_lease(...), COMMIT
  task_cycle             claim the task, COMMIT, take the proxy, COMMIT, finish the task (frees the proxy),
                         COMMIT, the fleet's own release, COMMIT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare_revisions import Server, prepare_tasks, set_up, spread  # noqa: E402
from tools.harness import CRON_DATABASE  # noqa: E402

# Each procedure runs its cycle until ``seconds`` have passed and returns the number of cycles and,
# per statement, the mean time in microseconds from before the statement to after its COMMIT.
PROCEDURES = {
    "acquire_release": """
CREATE OR REPLACE PROCEDURE bench_loop(seconds float8, INOUT cycles int DEFAULT 0, INOUT us float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t1 timestamptz; t_end timestamptz; p bigint; tok bigint; a float8 := 0; r float8 := 0;
BEGIN
    t_end := clock_timestamp() + seconds * interval '1 second';
    WHILE clock_timestamp() < t_end LOOP
        t0 := clock_timestamp();
        SELECT x.proxy_id, x.lease_token INTO p, tok FROM acquire_proxy('bench_0') x;
        COMMIT;
        t1 := clock_timestamp();
        IF NOT release_proxy(p, tok) THEN RAISE EXCEPTION 'release_proxy returned false'; END IF;
        COMMIT;
        a := a + extract(epoch FROM t1 - t0); r := r + extract(epoch FROM clock_timestamp() - t1);
        cycles := cycles + 1;
    END LOOP;
    us := ARRAY[a * 1e6 / cycles, r * 1e6 / cycles];
END $$""",
    "heartbeat": """
CREATE OR REPLACE PROCEDURE bench_loop(seconds float8, INOUT cycles int DEFAULT 0, INOUT us float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t_end timestamptz; h float8 := 0;
BEGIN
    t_end := clock_timestamp() + seconds * interval '1 second';
    WHILE clock_timestamp() < t_end LOOP
        t0 := clock_timestamp();
        UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = 1;
        COMMIT;
        h := h + extract(epoch FROM clock_timestamp() - t0);
        cycles := cycles + 1;
    END LOOP;
    us := ARRAY[h * 1e6 / cycles];
END $$""",
    "heartbeat_renewal_due": """
CREATE OR REPLACE PROCEDURE bench_loop(seconds float8, INOUT cycles int DEFAULT 0, INOUT us float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t1 timestamptz; t_end timestamptz; b float8 := 0; h float8 := 0; v_until timestamptz;
BEGIN
    t_end := clock_timestamp() + seconds * interval '1 second';
    WHILE clock_timestamp() < t_end LOOP
        t0 := clock_timestamp();
        UPDATE proxies SET leased_until = clock_timestamp() + interval '1 minute' WHERE id = 1;
        COMMIT;
        t1 := clock_timestamp();
        UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE id = 1;
        COMMIT;
        b := b + extract(epoch FROM t1 - t0); h := h + extract(epoch FROM clock_timestamp() - t1);
        cycles := cycles + 1;
    END LOOP;
    -- The last heartbeat renewed: the lease now ends lease_duration (5 min) ahead, not 1 min.
    SELECT leased_until INTO v_until FROM proxies WHERE id = 1;
    IF v_until < clock_timestamp() + interval '4 minutes' THEN RAISE EXCEPTION 'the heartbeat did not renew'; END IF;
    us := ARRAY[b * 1e6 / cycles, h * 1e6 / cycles];
END $$""",
    "renew": """
CREATE OR REPLACE PROCEDURE bench_loop(seconds float8, INOUT cycles int DEFAULT 0, INOUT us float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t_end timestamptz; p bigint; tok bigint; n float8 := 0;
BEGIN
    SELECT id, lease_token INTO p, tok FROM proxies WHERE id = 1 AND is_in_use;
    t_end := clock_timestamp() + seconds * interval '1 second';
    WHILE clock_timestamp() < t_end LOOP
        t0 := clock_timestamp();
        PERFORM renew_proxy_lease(p, tok);
        COMMIT;
        n := n + extract(epoch FROM clock_timestamp() - t0);
        cycles := cycles + 1;
    END LOOP;
    us := ARRAY[n * 1e6 / cycles];
END $$""",
    "task_cycle": """
CREATE OR REPLACE PROCEDURE bench_loop(seconds float8, INOUT cycles int DEFAULT 0, INOUT us float8[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; t_end timestamptz; s float8[] := ARRAY[0, 0, 0, 0];
BEGIN
    t_end := clock_timestamp() + seconds * interval '1 second';
    WHILE clock_timestamp() < t_end LOOP
        t0 := clock_timestamp();
        UPDATE catalog_tasks SET status = 'processing', worker_id = 'bench_0', heartbeat_at = clock_timestamp() WHERE id = 1;
        COMMIT;
        s[1] := s[1] + extract(epoch FROM clock_timestamp() - t0); t0 := clock_timestamp();
        UPDATE proxies SET is_in_use = true, worker_id = 'bench_0' WHERE id = 1;
        COMMIT;
        s[2] := s[2] + extract(epoch FROM clock_timestamp() - t0); t0 := clock_timestamp();
        UPDATE catalog_tasks SET status = 'done' WHERE id = 1;
        COMMIT;
        s[3] := s[3] + extract(epoch FROM clock_timestamp() - t0); t0 := clock_timestamp();
        UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE id = 1;
        COMMIT;
        s[4] := s[4] + extract(epoch FROM clock_timestamp() - t0);
        cycles := cycles + 1;
    END LOOP;
    us := ARRAY[s[1] * 1e6 / cycles, s[2] * 1e6 / cycles, s[3] * 1e6 / cycles, s[4] * 1e6 / cycles];
END $$""",
}
STATEMENTS = {
    "acquire_release": ["acquire_proxy", "release_proxy"],
    "heartbeat": ["heartbeat"],
    "heartbeat_renewal_due": ["move lease end back (direct UPDATE)", "heartbeat (renews)"],
    "renew": ["renew_proxy_lease"],
    "task_cycle": ["claim task", "take proxy (UPDATE)", "finish task (trigger frees proxy)", "fleet's release (no-op)"],
}


def summarize(runs: list[dict], cells: list[tuple[str, int]], sides: dict[str, str]) -> tuple[list[dict], str]:
    """Per statement and per whole cycle: medians, ranges, and the ratio of each round's two runs."""
    lines = [f"| Scenario | Pool | Statement (to its COMMIT) | {sides['base']} µs | {sides['new']} µs | Δ medians "
             "| paired new/base (min–max) | rounds new slower |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    summary = []
    for scenario, pool in cells:
        rounds: dict = {}
        for r in runs:
            if r["scenario"] == scenario and r["pool"] == pool:
                rounds.setdefault(r["round"], {})[r["side"]] = r
        pairs = [pair for pair in rounds.values() if len(pair) == 2]
        if not pairs:
            continue
        labels = STATEMENTS[scenario] + (["whole cycle"] if len(STATEMENTS[scenario]) > 1 else [])
        for i, label in enumerate(labels):
            def value(run: dict) -> float:
                return sum(run["us"]) if label == "whole cycle" else run["us"][i]
            base = [value(pair["base"]) for pair in pairs]
            new = [value(pair["new"]) for pair in pairs]
            ratios = [n / b for b, n in zip(base, new)]
            entry = {"scenario": scenario, "pool": pool, "statement": label, "base": spread(base),
                     "new": spread(new), "paired_ratio": spread(ratios), "rounds_new_slower": sum(x > 1 for x in ratios)}
            summary.append(entry)
            b, n, p = entry["base"], entry["new"], entry["paired_ratio"]
            lines.append(f"| {scenario} | {pool:,} | {label} | {b['median']:.1f} ({b['min']:.1f}–{b['max']:.1f}) "
                         f"| {n['median']:.1f} ({n['min']:.1f}–{n['max']:.1f}) | {n['median'] / b['median'] - 1:+.1%} "
                         f"| {p['median']:.3f} ({p['min']:.3f}–{p['max']:.3f}) | {entry['rounds_new_slower']}/{len(pairs)} |")
    return summary, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="0015_input_checks")
    parser.add_argument("--new", default="head")
    parser.add_argument("--source", type=Path, default=ROOT)
    parser.add_argument("--fsync", choices=("on", "off"), default="off")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 1_000])
    parser.add_argument("--scenarios", nargs="+", choices=PROCEDURES, default=list(PROCEDURES))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "compare_revisions_loop.json")
    parser.add_argument("--summarize", action="store_true",
                        help="only summarize an existing --output (e.g. a run cut short)")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sides = {"base": args.base, "new": args.new}
    cells = [(s, pool) for s in args.scenarios for pool in (args.pools if s == "acquire_release" else [10_000])]
    if args.summarize:
        results = json.loads(args.output.read_text(encoding="utf-8"))
    else:
        results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": []}
        with Server(args.fsync) as server:
            with server.connect(CRON_DATABASE) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
            databases = set_up(server, args.source, sides, args.pools, args.scenarios, False)
            for number in range(args.rounds):
                order = ("base", "new") if number % 2 == 0 else ("new", "base")
                for scenario, pool in cells:
                    for side in order:
                        dbname = (databases[("acquire", side, pool)] if scenario == "acquire_release"
                                  else databases[("tasks", side)])
                        if scenario == "acquire_release":
                            with server.connect(dbname) as conn:
                                conn.execute("VACUUM proxies")
                        else:
                            prepare_tasks(server, dbname, held=scenario != "task_cycle")
                        with server.connect(dbname) as conn:
                            conn.execute(PROCEDURES[scenario])
                            conn.execute("CHECKPOINT")
                            cycles, us = conn.execute("CALL bench_loop(%s)", (args.seconds,)).fetchone()
                        results["runs"].append({"scenario": scenario, "pool": pool, "side": side,
                                                "round": number + 1, "cycles": cycles, "us": us})
                        print(f"  round {number + 1} {scenario:<22} pool {pool:>6} {sides[side]:<24} {cycles:>7} "
                              "cycles " + " ".join(f"{u:8.1f}" for u in us) + " µs", flush=True)
                args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    results["summary"], report = summarize(results["runs"], cells, sides)
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    args.output.with_suffix(".md").write_text(report + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
