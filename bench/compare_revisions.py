"""The lease API's hot paths at two Alembic revisions, measured interleaved on one throwaway server.

    .venv/bin/python bench/compare_revisions.py                 # 0015_input_checks against head
    .venv/bin/python bench/compare_revisions.py --fsync on      # with the durable settings of scripts/bench
    .venv/bin/python bench/compare_revisions.py --source /tmp/snapshot --rounds 4 --seconds 20

Two sets of databases with the same data, one migrated with ``alembic upgrade <base>`` and one with
``alembic upgrade <new>`` (run as the alembic command line from ``--source``: a snapshot of the
repository, e.g. ``git archive HEAD``, so that edits to proxy_leases/sql/ during a run cannot reach it). Every
cell (scenario, pool, clients) runs once per revision per round, the order of the two revisions
alternating from round to round, so that a slow minute of the machine falls on both.

Scenarios (bench/pgbench/<script>.sql):

  acquire_release        acquire_proxy, then release_proxy (two transactions), on a pool of --pools
  heartbeat              the fleet's heartbeat UPDATE; no renewal is due (lease_duration 5 min)
  heartbeat_renewal_due  the lease end moved back to 1 min ahead, then the heartbeat, which renews
  renew                  renew_proxy_lease alone (every call renews)
  task_cycle             claim the task, take the proxy, finish the task, free it (four transactions)

The heartbeat, renewal and task cycle run on 10,000 proxies and 100,000 tasks, as
bench/scenario_triggers.py does. pgbench runs with --report-per-command, so every statement's mean
latency is kept beside the run's tps and mean latency. Renewals are counted from
pg_stat_user_tables (updates of proxies during the run). Raw runs and the summary go to --output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import PGBENCH_SCRIPTS, SERVER_SETTINGS, check, insert_proxies, machine  # noqa: E402
from bench.scenario_acquire import audit_check, last_event_id  # noqa: E402
from bench.scenario_triggers import MAX_CLIENTS, load  # noqa: E402
from tools.harness import CRON_DATABASE, ThrowawayPostgres  # noqa: E402

SCENARIOS = ("acquire_release", "heartbeat", "heartbeat_renewal_due", "renew", "task_cycle")
TASKS_DB_PROXIES = 10_000


class Server:
    """One throwaway server; ``connect`` as bench.harness.Harness does (the scenario helpers take it)."""

    def __init__(self, fsync: str) -> None:
        settings = tuple(s for s in SERVER_SETTINGS if not s.startswith("fsync=")) + (f"fsync={fsync}",)
        self.pg = ThrowawayPostgres(preload_pg_cron=True, settings=settings)
        self.pgbench_binary = os.path.join(self.pg.bindir, "pgbench")

    def __enter__(self) -> "Server":
        self.pg.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pg.stop()

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(self.pg.url(dbname), autocommit=True)


def alembic(source: Path, url: str, *args: str) -> None:
    """The alembic command line, run from ``source`` as docs/install.md says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_LEASES_")}
    command = [sys.executable, "-m", "alembic", "-x", f"url={url}", "-x", "cron=off", *args]
    result = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def create_database(server: Server, source: Path, name: str, revision: str, via_downgrade: bool) -> None:
    with server.connect(CRON_DATABASE) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.pg.url(name)
    if via_downgrade:
        alembic(source, url, "upgrade", "head")
        alembic(source, url, "downgrade", revision)
    else:
        alembic(source, url, "upgrade", revision)


# What each revision's hot functions are, read back from the catalog: the comparison is only worth
# something if the two databases really run different versions. Keyed by signature: since
# 0018_wrong_call_help release_proxy, renew_proxy_lease and block_proxy have a second, one-line overload.
INSTALLED = """
SELECT p.oid::regprocedure::text, md5(p.prosrc)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proname IN (
       'acquire_proxy', 'release_proxy', 'renew_proxy_lease', 'block_proxy',
       'tg_tasks__renew_proxy_lease_on_heartbeat', 'tg_tasks__release_proxy_on_task_exit',
       'tg_proxies__keep_lease_consistent')
 ORDER BY 1
"""


def installed(server: Server, dbname: str) -> dict:
    with server.connect(dbname) as conn:
        return {
            # proxy_leases_alembic_version since 0.16; a snapshot older than that used alembic_version
            "alembic_version": conn.execute(
                "SELECT version_num FROM " + conn.execute(
                    "SELECT coalesce(to_regclass('proxy_leases_alembic_version'), 'alembic_version')::text"
                ).fetchone()[0]).fetchone()[0],
            "functions_md5": dict(conn.execute(INSTALLED).fetchall()),
            "released_lease_token_column": conn.execute(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.proxies'::regclass "
                "AND attname = 'released_lease_token' AND NOT attisdropped").fetchone()[0] == 1,
        }


def table_updates(server: Server, dbname: str) -> dict[str, int]:
    with server.connect(dbname) as conn:
        return dict(conn.execute(
            "SELECT relname, n_tup_upd FROM pg_stat_user_tables WHERE relname IN ('proxies', 'catalog_tasks')"
        ).fetchall())


def function_times(server: Server, dbname: str) -> dict[str, tuple[int, float, float]]:
    """pg_stat_user_functions (empty unless track_functions is on): calls, total and self time in ms."""
    with server.connect(dbname) as conn:
        return {name: (calls, total, self_time) for name, calls, total, self_time in conn.execute(
            "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions").fetchall()}


def pgbench(server: Server, dbname: str, script: str, clients: int, seconds: int) -> dict:
    """The harness's pgbench call (bench/harness.py), with --report-per-command."""
    command = [
        server.pgbench_binary, "--no-vacuum", "--protocol=prepared", "--report-per-command",
        f"--client={clients}", f"--jobs={min(clients, 4)}", f"--time={seconds}",
        f"--file={PGBENCH_SCRIPTS / (script + '.sql')}",
        f"--host={server.pg.host}", f"--port={server.pg.port}", f"--username={server.pg.user}", dbname,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "aborted" in output:
        raise RuntimeError(f"pgbench {script} with {clients} clients failed:\n{output}")
    failed = re.search(r"number of failed transactions: (\d+)", output)
    statements = []
    lines = output.split("statement latencies in milliseconds", 1)[1].splitlines()[1:]
    for line in lines:
        match = re.match(r"^\s+([\d.]+)\s+(?:(\d+)\s+)?(\S.*)$", line)
        if match and not match.group(3).startswith("\\"):
            statements.append({"statement": match.group(3).strip(), "latency_ms": float(match.group(1))})
    return {
        "cycles": int(re.search(r"number of transactions actually processed: (\d+)", output).group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "tps": float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1)),
        "latency_ms": float(re.search(r"latency average = ([\d.]+) ms", output).group(1)),
        "statements": statements,
    }


def set_up(server: Server, source: Path, sides: dict[str, str], pools: list[int], scenarios: list[str],
           via_downgrade: bool) -> dict:
    databases: dict = {}
    for side, revision in sides.items():
        if "acquire_release" in scenarios:
            for pool in pools:
                name = f"cmp_acquire_{side}_{pool}"
                create_database(server, source, name, revision, via_downgrade and side == "base")
                with server.connect(name) as conn:
                    insert_proxies(conn, pool)
                    conn.execute("VACUUM ANALYZE proxies")
                databases[("acquire", side, pool)] = name
        if set(scenarios) - {"acquire_release"}:
            name = f"cmp_tasks_{side}"
            create_database(server, source, name, revision, via_downgrade and side == "base")
            load(server, name)
            with server.connect(name) as conn:
                conn.execute("CREATE TABLE bench_grants (client int PRIMARY KEY, proxy_id bigint, lease_token bigint)")
            databases[("tasks", side)] = name
    return databases


def prepare_tasks(server: Server, dbname: str, held: bool) -> None:
    """bench/scenario_triggers.py's prepare, without its side effect on the proxies.

    That one sends the clients' tasks back to pending while their workers hold proxies: a requeue,
    a strike against each proxy, which after three runs quarantines them (blocked), and a blocked
    proxy is never renewed. Here the proxies are released first (a clean release clears strikes),
    then the tasks reset, and any block left over lifted.
    """
    with server.connect(dbname) as conn:
        conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE is_in_use")
        conn.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE id <= %s", (MAX_CLIENTS,))
        conn.execute("UPDATE proxies SET is_blocked = false, strike_count = 0 WHERE is_blocked OR strike_count > 0")
        if held:
            conn.execute("UPDATE catalog_tasks SET status = 'processing', worker_id = 'bench_' || (id - 1), "
                         "heartbeat_at = clock_timestamp() WHERE id <= %s", (MAX_CLIENTS,))
            conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || (id - 1) WHERE id <= %s",
                         (MAX_CLIENTS,))
        blocked, struck = conn.execute(
            "SELECT count(*) FILTER (WHERE is_blocked), count(*) FILTER (WHERE strike_count > 0) FROM proxies"
        ).fetchone()
        check(blocked == 0 and struck == 0, f"{dbname}: {blocked} blocked and {struck} struck proxies after prepare")
        conn.execute("VACUUM catalog_tasks, proxies")


def prepare_run(server: Server, dbname: str, scenario: str) -> None:
    if scenario == "acquire_release":
        with server.connect(dbname) as conn:
            conn.execute("VACUUM proxies")
    else:
        prepare_tasks(server, dbname, held=scenario != "task_cycle")
        if scenario == "renew":
            with server.connect(dbname) as conn:
                conn.execute("TRUNCATE bench_grants")
                conn.execute("INSERT INTO bench_grants SELECT id - 1, id, lease_token FROM proxies "
                             "WHERE id <= %s AND is_in_use", (MAX_CLIENTS,))
    with server.connect(dbname) as conn:
        conn.execute("CHECKPOINT")


def run_cell(server: Server, dbname: str, scenario: str, clients: int, seconds: int) -> dict:
    prepare_run(server, dbname, scenario)
    after = last_event_id(server, dbname)
    with server.connect(dbname) as conn:
        finished_before = conn.execute(
            "SELECT count(*) FROM proxy_lease_events WHERE event = 'released' AND reason = 'task_finished'"
        ).fetchone()[0]
    updates_before = table_updates(server, dbname)
    functions_before = function_times(server, dbname)
    load_before = os.getloadavg()[0]
    with server.connect(dbname) as conn:
        wal_before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    result = pgbench(server, dbname, scenario, clients, seconds)
    with server.connect(dbname) as conn:
        # Server-wide, but nothing else writes during the run (pg_cron's jobs are not installed: cron=off).
        result["wal_bytes_per_cycle"] = conn.execute(
            "SELECT (pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn) / %s)::float8", (wal_before, result["cycles"])
        ).fetchone()[0]
    time.sleep(1.0)  # the pgbench backends report their counts as they exit
    updates_after = table_updates(server, dbname)
    functions_after = function_times(server, dbname)
    result["functions"] = {}
    for name, (calls, total, self_time) in functions_after.items():
        calls0, total0, self0 = functions_before.get(name, (0, 0.0, 0.0))
        if calls > calls0:
            result["functions"][name] = {"calls": calls - calls0,
                                         "mean_total_us": (total - total0) * 1000 / (calls - calls0),
                                         "mean_self_us": (self_time - self0) * 1000 / (calls - calls0)}
    proxy_updates = updates_after["proxies"] - updates_before["proxies"]
    task_updates = updates_after.get("catalog_tasks", 0) - updates_before.get("catalog_tasks", 0)
    result.update(load_before=load_before, proxy_updates=proxy_updates, task_updates=task_updates)
    if scenario == "acquire_release":
        result["audit"] = audit_check(server, dbname, after, result["cycles"])
    elif scenario == "heartbeat":
        # Any update of proxies here is a renewal by the heartbeat trigger.
        result["renewals"] = proxy_updates
        result["heartbeats"] = task_updates
    elif scenario == "heartbeat_renewal_due":
        # Each cycle updates the proxy once to move the lease back: the rest are the trigger's renewals.
        result["renewals"] = proxy_updates - task_updates
        result["heartbeats"] = task_updates
        check(result["renewals"] >= 0.99 * task_updates,
              f"{dbname}: only {result['renewals']} renewals for {task_updates} heartbeats")
    elif scenario == "renew":
        result["renewals"] = proxy_updates
        check(proxy_updates >= result["cycles"], f"{dbname}: {proxy_updates} renewals for {result['cycles']} calls")
    elif scenario == "task_cycle":
        with server.connect(dbname) as conn:
            finished = conn.execute(
                "SELECT count(*) FROM proxy_lease_events WHERE event = 'released' AND reason = 'task_finished'"
            ).fetchone()[0] - finished_before
        result["released_on_task_exit"] = finished
        check(finished >= result["cycles"], f"{dbname}: {finished} task-exit releases for {result['cycles']} cycles")
    return result


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict]) -> list[dict]:
    cells: dict = {}
    for run in runs:
        cells.setdefault((run["scenario"], run["pool"], run["clients"]), []).append(run)
    summary = []
    for (scenario, pool, clients), cell_runs in cells.items():
        entry: dict = {"scenario": scenario, "pool": pool, "clients": clients}
        for side in ("base", "new"):
            side_runs = [r for r in cell_runs if r["side"] == side]
            entry[side] = {
                "tps": spread([r["tps"] for r in side_runs]),
                "latency_ms": spread([r["latency_ms"] for r in side_runs]),
                "statements_ms": [spread([r["statements"][i]["latency_ms"] for r in side_runs])
                                  | {"statement": side_runs[0]["statements"][i]["statement"]}
                                  for i in range(len(side_runs[0]["statements"]))],
            }
            entry[side]["wal_bytes_per_cycle"] = spread([float(r["wal_bytes_per_cycle"]) for r in side_runs])
            names = sorted({name for r in side_runs for name in r.get("functions", {})})
            entry[side]["functions_us"] = {
                name: {"self": spread([r["functions"][name]["mean_self_us"] for r in side_runs if name in r["functions"]]),
                       "total": spread([r["functions"][name]["mean_total_us"] for r in side_runs if name in r["functions"]]),
                       "calls_per_cycle": statistics.median(r["functions"][name]["calls"] / r["cycles"]
                                                            for r in side_runs if name in r["functions"])}
                for name in names}
            if "renewals" in side_runs[0]:
                entry[side]["renewals"] = [r["renewals"] for r in side_runs]
                entry[side]["cycles"] = [r["cycles"] for r in side_runs]
        # The same round's two runs, paired: new / base.
        rounds = sorted({r["round"] for r in cell_runs})
        ratios = []
        for number in rounds:
            pair = {r["side"]: r for r in cell_runs if r["round"] == number}
            if len(pair) == 2:
                ratios.append(pair["new"]["tps"] / pair["base"]["tps"])
        entry["tps_change"] = entry["new"]["tps"]["median"] / entry["base"]["tps"]["median"] - 1
        entry["latency_change"] = entry["new"]["latency_ms"]["median"] / entry["base"]["latency_ms"]["median"] - 1
        entry["paired_tps_ratio"] = spread(ratios)
        summary.append(entry)
    return summary


def table(summary: list[dict], sides: dict[str, str]) -> str:
    def cell(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"

    lines = [
        f"| Scenario | Pool | K | tps {sides['base']} | tps {sides['new']} | Δ tps | paired new/base (min–max) "
        f"| latency ms {sides['base']} | latency ms {sides['new']} | Δ latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in summary:
        lines.append(
            f"| {e['scenario']} | {e['pool']:,} | {e['clients']} | {cell(e['base']['tps'], ',.0f')} "
            f"| {cell(e['new']['tps'], ',.0f')} | {e['tps_change']:+.1%} "
            f"| {e['paired_tps_ratio']['median']:.3f} ({e['paired_tps_ratio']['min']:.3f}–{e['paired_tps_ratio']['max']:.3f}) "
            f"| {cell(e['base']['latency_ms'], '.3f')} | {cell(e['new']['latency_ms'], '.3f')} "
            f"| {e['latency_change']:+.1%} |")
    lines += ["", "Per statement (mean latency in ms, median of rounds, min–max):", "",
              "| Scenario | Pool | K | Statement | base | new | Δ |", "|---|---:|---:|---|---:|---:|---:|"]
    for e in summary:
        for b, n in zip(e["base"]["statements_ms"], e["new"]["statements_ms"]):
            lines.append(f"| {e['scenario']} | {e['pool']:,} | {e['clients']} | `{b['statement'][:70]}` "
                         f"| {cell(b, '.3f')} | {cell(n, '.3f')} | {n['median'] / b['median'] - 1:+.1%} |")
    lines += ["", "WAL bytes per cycle (median of rounds):", "",
              "| Scenario | Pool | K | base | new | Δ |", "|---|---:|---:|---:|---:|---:|"]
    for e in summary:
        b, n = e["base"]["wal_bytes_per_cycle"]["median"], e["new"]["wal_bytes_per_cycle"]["median"]
        lines.append(f"| {e['scenario']} | {e['pool']:,} | {e['clients']} | {b:,.0f} | {n:,.0f} | {n / b - 1:+.1%} |")
    function_lines = []
    for e in summary:
        for name in sorted(set(e["base"]["functions_us"]) | set(e["new"]["functions_us"])):
            b, n = e["base"]["functions_us"].get(name), e["new"]["functions_us"].get(name)
            if b and n:
                function_lines.append(
                    f"| {e['scenario']} | {e['pool']:,} | {e['clients']} | {name} | {b['calls_per_cycle']:.2f} "
                    f"| {cell(b['total'], '.1f')} | {cell(n['total'], '.1f')} | {n['total']['median'] / b['total']['median'] - 1:+.1%} "
                    f"| {cell(b['self'], '.1f')} | {cell(n['self'], '.1f')} |")
    if function_lines:
        lines += ["", "Server time per call (µs, pg_stat_user_functions; total includes nested calls and triggers):", "",
                  "| Scenario | Pool | K | Function | calls/cycle | total base | total new | Δ total | self base | self new |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|", *function_lines]
    renewal_lines = []
    for e in summary:
        if "renewals" in e["base"]:
            for side in ("base", "new"):
                renewal_lines.append(
                    f"| {e['scenario']} | {e['clients']} | {sides[side]} | "
                    + ", ".join(f"{r:,}/{c:,}" for r, c in zip(e[side]["renewals"], e[side]["cycles"])) + " |")
    if renewal_lines:
        lines += ["", "Renewals per run (proxy rows renewed / pgbench cycles):", "",
                  "| Scenario | K | Revision | renewals/cycles, each round |", "|---|---:|---|---|", *renewal_lines]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="0015_input_checks")
    parser.add_argument("--new", default="head")
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="repository to run alembic from (default: this one); e.g. a `git archive HEAD` snapshot")
    parser.add_argument("--base-via-downgrade", action="store_true",
                        help="build the base databases with upgrade head, then downgrade <base>")
    parser.add_argument("--fsync", choices=("on", "off"), default="off",
                        help="off (default) shows the CPU cost; on is scripts/bench's durable setting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 1_000], help="acquire_release pool sizes")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--track-functions", action="store_true",
                        help="track_functions = pl in the databases: per run, each PL/pgSQL function's calls and "
                             "mean time on the server (pg_stat_user_functions); costs a little, so a separate run")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "compare_revisions.json")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sides = {"base": args.base, "new": args.new}
    commit = subprocess.run(["git", "-C", str(args.source), "rev-parse", "HEAD"], capture_output=True, text=True)
    marker = args.source / ".commit"  # a snapshot's commit, written beside `git archive` output
    source_commit = commit.stdout.strip() if commit.returncode == 0 else (
        marker.read_text().strip() if marker.exists() else None)

    cells = []
    for scenario in args.scenarios:
        for pool in (args.pools if scenario == "acquire_release" else [TASKS_DB_PROXIES]):
            for clients in args.clients:
                cells.append((scenario, pool, clients))

    results: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                     "source_commit": source_commit, "runs": []}
    with Server(args.fsync) as server:
        with server.connect(CRON_DATABASE) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
            results["machine"] = machine(conn)
        print(f"server on port {server.pg.port}, building databases", flush=True)
        databases = set_up(server, args.source, sides, args.pools, args.scenarios, args.base_via_downgrade)
        if args.track_functions:
            with server.connect(CRON_DATABASE) as conn:
                for name in databases.values():
                    conn.execute(f'ALTER DATABASE "{name}" SET track_functions = \'pl\'')
        results["installed"] = {f"{key}": installed(server, name) for key, name in databases.items()}
        for key, name in databases.items():
            print(f"  {name}: {results['installed'][str(key)]['alembic_version']}", flush=True)
        started = time.perf_counter()
        for number in range(args.rounds):
            order = ("base", "new") if number % 2 == 0 else ("new", "base")
            for scenario, pool, clients in cells:
                for side in order:
                    dbname = (databases[("acquire", side, pool)] if scenario == "acquire_release"
                              else databases[("tasks", side)])
                    run = run_cell(server, dbname, scenario, clients, args.seconds)
                    run.update(scenario=scenario, pool=pool, clients=clients, side=side,
                               revision=sides[side], round=number + 1)
                    results["runs"].append(run)
                    print(f"  round {number + 1} {scenario:<22} pool {pool:>6} K={clients} {sides[side]:<24} "
                          f"{run['tps']:>9.1f} tps {run['latency_ms']:.3f} ms  load {run['load_before']:.2f}"
                          + (f"  renewals {run['renewals']}" if "renewals" in run else ""), flush=True)
                    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
            print(f"round {number + 1} of {args.rounds} done after {(time.perf_counter() - started) / 60:.1f} min",
                  flush=True)
    results["summary"] = summarize(results["runs"])
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    report = table(results["summary"], sides)
    args.output.with_suffix(".md").write_text(report + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
