"""results.json to results.md (tables, medians, ratios, each target met or missed) and PNG plots."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WAY_LABELS = {
    "acquire_release": "acquire_proxy + release_proxy (head)",
    "without_audit": "the same, audit trail off (record_lease_events = false)",
    "naive_for_update": "naive: SELECT … LIMIT 1 FOR UPDATE, then UPDATE",
    "naive_subselect": "naive: UPDATE … WHERE id = (SELECT … LIMIT 1)",
    "two_updates": "limit: two single-row UPDATEs",
    "two_updates_at_head": "the same two UPDATEs at head",
}


# The fleet's statements measured by scenario 3: label, and the target share of today's throughput.
TRIGGER_SCRIPTS: dict[str, tuple[str, float | None]] = {
    "heartbeat": ("Heartbeat, the fleet's statement unchanged", 0.95),
    "heartbeat_every_3s": ("Heartbeat at a fleet's cadence (3 s apart)", None),
    "task_cycle": ("The legacy task cycle (take by UPDATE, claim, finish, give back)", 0.8),
}


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def ms(value: float) -> str:
    return f"{value:,.3f} ms" if value < 10 else f"{value:,.0f} ms"


def times(value: float) -> str:
    return f"{value:,.0f}×" if value >= 10 else f"{value:.2f}×"


def rate(value: float) -> str:
    return f"{value:,.0f} /s"


def rate_and_spread(values: list[float]) -> str:
    """A throughput cell: the median, then the lowest and highest run."""
    return f"{rate(median(values))} ({min(values):,.0f}–{max(values):,.0f})"


class Report:
    def __init__(self, results: dict, output: Path) -> None:
        self.results, self.output = results, output
        self.lines: list[str] = []
        self.plots: list[Path] = []
        self.targets: list[tuple[str, str, bool]] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def target(self, what: str, figure: str, met: bool) -> None:
        self.targets.append((what, figure, met))

    def plot(self, name: str, figure) -> None:
        path = self.output / name
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        self.plots.append(path)
        self.add(f"![{name}]({name})", "")

    # -- scenarios -------------------------------------------------------------------------------

    def sweep(self, data: dict) -> None:
        sizes = data["sizes"]
        self.add("## 1. Sweep cost vs size", "",
                 f"{data['live_workers']} live workers, {data['stuck']} proxies stuck on a dead container, tasks = "
                 "10 × proxies (half of the history with NULL worker ids). The report's query on the schema as it "
                 "is today; `release_stuck_proxies()` on the same data after `alembic upgrade head`. Each call in "
                 "its own rolled-back transaction; medians of "
                 f"{sizes[0]['report_runs']} (report, fewer at 1,000,000) and {sizes[0]['sweep_runs']} (sweep) calls. "
                 "Server: the statement's execution, from its arrival to the end of its work. Client: as the caller "
                 f"sees it, round trip included. New session: the sweep as the first statement of a new connection "
                 f"(server time, median of {sizes[0]['first_calls']}), which is how pg_cron runs it.", "",
                 "| Proxies | Tasks | Report's query, server (client) | Sweep freeing 16, server (client) | "
                 "… in a new session | Report / sweep | Sweep, nothing to free, server (client) | "
                 "`alembic upgrade head` |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in sizes:
            self.add(f"| {row['proxies']:,} | {row['tasks']:,} | {ms(row['report_ms'])} ({ms(row['report_client_ms'])}) | "
                     f"{ms(row['sweep_stuck_ms'])} ({ms(row['sweep_stuck_client_ms'])}) | "
                     f"{ms(row['sweep_stuck_first_call_ms'])} | {times(row['report_ms'] / row['sweep_stuck_ms'])} | "
                     f"{ms(row['sweep_idle_ms'])} ({ms(row['sweep_idle_client_ms'])}) | {row['upgrade_s']:.1f} s |")
        self.add("", f"A bare round trip (`SELECT` of the server time) took {ms(sizes[-1]['round_trip_ms'])} from the "
                     "client.", "")
        smallest, largest = sizes[0], sizes[-1]
        ratio = largest["report_ms"] / largest["sweep_stuck_ms"]
        growth = largest["sweep_stuck_ms"] / smallest["sweep_stuck_ms"]
        at = f"at {largest['proxies']:,} proxies"
        self.target(f"Sweep ≥ 1000× faster than the report's query {at} (server times)", times(ratio), ratio >= 1000)
        self.target(f"Sweep freeing {data['stuck']} ≤ 0.5 ms {at} (server time; client "
                    f"{ms(largest['sweep_stuck_client_ms'])}, in a new session {ms(largest['sweep_stuck_first_call_ms'])})",
                    ms(largest["sweep_stuck_ms"]), largest["sweep_stuck_ms"] <= 0.5)
        self.target(f"Finding the stuck proxies < 0.1 ms {at} (the sweep with nothing to free, server time)",
                    ms(largest["sweep_idle_ms"]), largest["sweep_idle_ms"] < 0.1)
        self.target(f"Sweep grows < 2× from {smallest['proxies']:,} to {largest['proxies']:,} proxies",
                    times(growth), growth < 2)
        figure, axes = plt.subplots(figsize=(7, 4.2))
        x = [row["proxies"] for row in sizes]
        axes.plot(x, [row["report_ms"] for row in sizes], "o-", label="the report's query (today's schema)")
        axes.plot(x, [row["sweep_stuck_ms"] for row in sizes], "s-", label="release_stuck_proxies(), freeing 16")
        axes.plot(x, [row["sweep_idle_ms"] for row in sizes], "^-", label="release_stuck_proxies(), nothing to free")
        axes.set(xscale="log", yscale="log", xlabel="proxies (tasks = 10 × proxies)",
                 ylabel="ms per call on the server (median)",
                 title="Sweep cost vs size")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        self.plot("sweep.png", figure)

    def acquire(self, data: dict) -> None:
        cells = {(c["pool"], c["clients"], c["way"]): median(c["cycles_per_second"]) for c in data["cells"]}
        runs = {(c["pool"], c["clients"], c["way"]): c["cycles_per_second"] for c in data["cells"]}
        ways = [way for way in WAY_LABELS if any(key[2] == way for key in cells)]
        pools = sorted({pool for pool, _, _ in cells})
        clients = sorted({k for _, k, _ in cells})
        grants = sum(a["grants"] for a in data["audits"])
        doubles = sum(a["double_grants"] + a["reused_tokens"] for a in data["audits"])
        self.add("## 2. Acquisition throughput", "",
                 "Cycles per second (one cycle: take a proxy, give it back; two transactions), by pgbench with "
                 f"K clients, `--protocol=prepared`, {data['seconds']} s per run, median of {data['runs']} runs. "
                 "The lease API runs at head; the naive forms and the limit on a pool of the same size in today's "
                 "schema (no triggers, no audit trail, no partial indexes: what the fleet runs now), and the limit's "
                 "two UPDATEs once more at head. Each cell: median (lowest–highest run). "
                 "Scripts: `bench/pgbench/`.", "")
        worst_share, naive_misses = 1e9, []
        share_misses: list[str] = []
        lowest: dict[bool, float] = {}
        for pool in pools:
            self.add(f"### Pool of {pool:,} proxies", "",
                     "| K | " + " | ".join(WAY_LABELS[w] for w in ways) + " | lease API / limit |",
                     "|---:|" + "---:|" * (len(ways) + 1))
            for k in clients:
                ours, limit = cells[(pool, k, "acquire_release")], cells[(pool, k, "two_updates")]
                share = ours / limit
                worst_share = min(worst_share, share)
                floor = 0.5 if k <= 4 else 0.35
                lowest[k <= 4] = min(lowest.get(k <= 4, 1e9), share)
                if share < floor:
                    share_misses.append(f"K={k}, pool {pool:,}: {share:.0%}")
                if k >= 2:
                    for naive in ("naive_for_update", "naive_subselect"):
                        if ours <= cells[(pool, k, naive)]:
                            naive_misses.append(f"{naive} at K={k}, pool {pool:,}: {rate(cells[(pool, k, naive)])} "
                                                f"vs {rate(ours)}")
                self.add(f"| {k} | " + " | ".join(rate_and_spread(runs[(pool, k, w)]) for w in ways)
                         + f" | {share:.0%} |")
            self.add("")
        self.add(f"Audit trail read back after every run of the lease API: {grants:,} grants, {doubles} double "
                 "grants or reused tokens.", "")
        self.add("The naive forms, run once more each on a pool that counts every take of a proxy already held "
                 "(not timed):", "", "| Pool | Way | K | Cycles | Double grants |", "|---:|---|---:|---:|---:|")
        for one in data["naive_double_grants"]:
            self.add(f"| {one['pool']:,} | {WAY_LABELS[one['way']]} | {one['clients']} | {one['cycles']:,} | "
                     f"{one['double_grants']:,} |")
        self.add("")
        audit_costs = [1 - cells[(pool, k, "acquire_release")] / cells[(pool, k, "without_audit")]
                       for pool in pools for k in clients]
        self.add(f"The audit trail's share of the lease API's cycle: from {min(audit_costs):.0%} to "
                 f"{max(audit_costs):.0%} by cell (1 − with / without).", "")
        self.target("acquire_proxy + release_proxy ≥ 50 % of the two-UPDATE limit at K = 1, 2, 4 and ≥ 35 % at "
                    "K = 8, 16",
                    "lowest " + ", ".join(f"{lowest[small]:.0%} at K {'≤ 4' if small else '≥ 8'}"
                                          for small in (True, False) if small in lowest)
                    + (f"; below: {', '.join(share_misses)}" if share_misses else ""), not share_misses)
        self.target("Ahead of both naive forms at every K ≥ 2",
                    "; ".join(naive_misses) if naive_misses else "ahead in every cell", not naive_misses)
        self.target("Zero double grants (from the audit trail)", f"{doubles} in {grants:,} grants", doubles == 0)
        figure, all_axes = plt.subplots(1, len(pools), figsize=(12, 4.4), sharey=True)
        for axes, pool in zip(all_axes, pools):
            for way in ways:
                axes.plot(clients, [cells[(pool, k, way)] for k in clients], "o-", label=WAY_LABELS[way])
            axes.set_xscale("log", base=2)
            axes.minorticks_off()
            axes.set(xticks=clients, xticklabels=[str(k) for k in clients], xlabel="clients (K)",
                     title=f"pool of {pool:,} proxies")
            axes.grid(True, alpha=0.3)
        all_axes[0].set_ylabel("cycles per second (median)")
        all_axes[-1].legend(fontsize=8)
        self.plot("acquire.png", figure)

    def triggers(self, data: dict) -> None:
        runs = {(c["script"], c["clients"], c["side"]): c["cycles_per_second"] for c in data["cells"]}
        cells = {key: median(values) for key, values in runs.items()}
        clients = sorted({k for _, k, _ in cells})
        scripts = [script for script in TRIGGER_SCRIPTS if any(key[0] == script for key in cells)]
        self.add("## 3. The fleet's own statements: today's schema vs head", "",
                 "The fleet's own statements, unchanged, on today's schema and at head, same data (10,000 proxies, "
                 "100,000 tasks); pgbench, "
                 f"{data['seconds']} s per run, median of {data['runs']} runs, the two sides interleaved. "
                 "`heartbeat.sql` is the heartbeat with the server's clock, each client beating as fast as it can: "
                 "at head only the first heartbeat of a task in each renewal slot (a tenth of lease_duration, 30 s) "
                 "runs the renewal trigger, so nearly none do. `heartbeat_every_3s.sql` is the same UPDATE with "
                 "heartbeat_at 3 s on from the client's last, a worker beating every 3 s played back at full "
                 "speed: one in ten runs the renewal trigger, which finds the lease fresh. A task cycle is four "
                 "transactions: claim the task, take the proxy, finish the task (at head the trigger frees the proxy "
                 "here, and the audit trail records the grant and the release), give the proxy back. Each cell: "
                 "median (lowest–highest run).", "",
                 "| Statement | K | Today's schema | Head | Head / today | Target |", "|---|---:|---:|---:|---:|---:|")
        misses: dict[str, list[str]] = {}
        lowest: dict[str, float] = {}
        for script in scripts:
            for k in clients:
                without, with_ = cells[(script, k, "without")], cells[(script, k, "with")]
                share = with_ / without
                floor = TRIGGER_SCRIPTS[script][1]
                lowest[script] = min(lowest.get(script, 1e9), share)
                if floor is not None and share < floor:
                    misses.setdefault(script, []).append(f"K={k}: {share:.2f}×")
                self.add(f"| {script} | {k} | {rate_and_spread(runs[(script, k, 'without')])} | "
                         f"{rate_and_spread(runs[(script, k, 'with')])} | {share:.2f}× | "
                         f"{'—' if floor is None else f'≥ {floor:.2f}×'} |")
        self.add("", f"Proxies freed by the task-exit trigger at head during these runs: "
                     f"{data['released_on_task_exit']:,}.", "")
        for script, (label, floor) in TRIGGER_SCRIPTS.items():
            if floor is not None and script in lowest:
                self.target(f"{label} ≥ {floor:.2f}× of today's schema at K = {', '.join(map(str, clients))}",
                            f"lowest {lowest[script]:.2f}×" + (f" ({', '.join(misses[script])})"
                                                              if script in misses else ""),
                            script not in misses)
        figure, axes = plt.subplots(figsize=(7, 4.2))
        for script in scripts:
            line = axes.plot(clients, [cells[(script, k, "with")] / cells[(script, k, "without")] for k in clients],
                             "o-", label=TRIGGER_SCRIPTS[script][0])
            floor = TRIGGER_SCRIPTS[script][1]
            if floor is not None:
                axes.axhline(floor, color=line[0].get_color(), linestyle=":", linewidth=1)
        axes.axhline(1.0, color="grey", linewidth=0.8)
        axes.set_xscale("log", base=2)
        axes.minorticks_off()
        axes.set(xticks=clients, xticklabels=[str(k) for k in clients], xlabel="clients (K)", ylim=(0, 1.2),
                 ylabel="head / today's schema (throughput)",
                 title="What proxy-leases costs the fleet's own statements\n(dotted: the targets)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="lower left")
        self.plot("fleet_cost.png", figure)
        figure, axes = plt.subplots(figsize=(8, 4.2))
        groups = [(script, k) for script in scripts for k in clients]
        positions = range(len(groups))
        for offset, side, label in ((-0.2, "without", "today's schema"), (0.2, "with", "head (the project's triggers)")):
            axes.bar([p + offset for p in positions], [cells[(script, k, side)] for script, k in groups], 0.4,
                     label=label)
        axes.set_xticks(list(positions), [f"{script.replace('_every', chr(10) + 'every')}\nK={k}"
                                          for script, k in groups], fontsize=7)
        axes.set(ylabel="cycles per second (median)", title="The fleet's statements, with and without the triggers")
        axes.legend()
        self.plot("triggers.png", figure)

    def recovery(self, data: dict) -> None:
        how = "pg_cron's maintenance job, every minute" if data["by_pg_cron"] else \
            "run_lease_maintenance() called every second by the script (quick mode, not pg_cron)"
        self.add("## 4. Recovery time", "",
                 f"15 worker connections of one container killed mid-lease; lease {data['lease_s']} s; swept by "
                 f"{how}. Time from the kill to the last release event of its proxies, on the server's clock.", "",
                 "| Path | heartbeat_timeout | Kill at second | Recovered in | Reasons |", "|---|---|---:|---:|---|")
        worst = 0.0
        for path, rounds in data["paths"].items():
            for one in rounds:
                worst = max(worst, one["recovered_s"])
                second = "—" if one["killed_at_second"] is None else f":{one['killed_at_second']:02.0f}"
                self.add(f"| {path} | {data['heartbeat_timeouts'][path]} | {second} | {one['recovered_s']:.1f} s | "
                         f"{', '.join(one['reasons'])} |")
        self.add("")
        self.target(f"Recovery within the lease + one schedule period ({data['bound_s']} s)", f"worst {worst:.1f} s",
                    worst <= data["bound_s"])
        figure, axes = plt.subplots(figsize=(7, 3.6))
        for row, (path, rounds) in enumerate(data["paths"].items()):
            axes.plot([one["recovered_s"] for one in rounds], [row] * len(rounds), "o", markersize=9,
                      label=f"{path} path")
        axes.axvline(data["bound_s"], color="red", linestyle="--", label="lease + one schedule period")
        axes.axvline(data["lease_s"], color="grey", linestyle=":", label="lease")
        axes.set_yticks(range(len(data["paths"])), [f"{path} path" for path in data["paths"]])
        axes.set(xlabel="seconds from the kill until all 15 proxies are free", xlim=(0, data["bound_s"] * 1.15),
                 ylim=(-0.7, len(data["paths"]) - 0.3), title="Recovery after a container crash")
        axes.legend(fontsize=8, loc="lower right")
        self.plot("recovery.png", figure)

    def size(self, data: dict) -> None:
        before, after = data["before"], data["after"]
        self.add("## 5. Size", "",
                 f"{data['proxies']:,} proxies, {data['tasks']:,} tasks, after VACUUM FULL; at head every proxy has "
                 "been taken and given back once and 10 % are held.", "",
                 "| What | Today's schema | Head | Added |", "|---|---:|---:|---:|",
                 f"| Proxy row (`pg_column_size`) | {before['proxy_row_bytes']:.0f} B | {after['proxy_row_bytes']:.0f} B | "
                 f"{after['proxy_row_bytes'] - before['proxy_row_bytes']:+.0f} B |")
        for name, relation in sorted(after["relations"].items()):
            if relation["kind"] == "r":
                old = before["relations"].get(name, {"bytes": 0})["bytes"]
                per_row = ""
                if name == "proxies":
                    per_row = f" ({(relation['bytes'] - old) / data['proxies']:+.1f} B per proxy)"
                self.add(f"| Table `{name}` | {old / 1024:,.0f} KiB | {relation['bytes'] / 1024:,.0f} KiB | "
                         f"{(relation['bytes'] - old) / 1024:+,.0f} KiB{per_row} |")
        self.add("", "Indexes the migrations added, with what they hold at that moment:", "",
                 "| Index | On | Entries | Size | Bytes per entry |", "|---|---|---:|---:|---:|")
        for name, relation in sorted(after["relations"].items()):
            if relation["kind"] == "i" and name not in before["relations"]:
                per_entry = f"{relation['bytes'] / relation['entries']:.0f} B" if relation["entries"] >= 1000 else \
                    "— (too few entries)"
                self.add(f"| `{name}` | {relation['table']} | {relation['entries']:,} | "
                         f"{relation['bytes'] / 1024:,.0f} KiB | {per_entry} |")
        events = after["relations"]["proxy_lease_events"]
        indexes = sum(r["bytes"] for r in after["relations"].values() if r["table"] == "proxy_lease_events")
        self.add("", f"Audit trail: {data['events']:,} events, {(events['bytes'] + indexes) / data['events']:.0f} bytes "
                     "per event with its indexes.", "")

    def peers(self, data: dict) -> None:
        runs = {(c["system"], c["clients"]): c["cycles_per_second"] for c in data["cells"]}
        cells = {key: median(values) for key, values in runs.items()}
        clients = sorted({k for _, k in cells})
        versions = data["versions"]
        self.add("## 6. Against other PostgreSQL queues", "",
                 "One claim-and-finish cycle per pgbench transaction pair, each system doing what its own worker "
                 f"sends, on the same server in the same run; {data['seconds']} s per run, median of {data['runs']} "
                 "runs, each run on a fresh copy of a prefilled database, the systems taking turns. Each cell: "
                 "median (lowest–highest run). Every run is checked: the jobs finished (grants made) equal the "
                 "cycles pgbench counted, and jobs were left.", "",
                 "| System | Its cycle (two transactions) | Rows written per cycle | NOTIFY |", "|---|---|---|---|",
                 f"| proxy-leases (head) | `acquire_proxy(worker)`, then `release_proxy(id, token)` "
                 f"(`bench/pgbench/acquire_release.sql`), pool of {data['proxies']:,} proxies, audit trail on | "
                 "the proxy row twice (non-HOT: the free-pool index), two proxy_lease_events rows | one, when the "
                 "proxy is free again |",
                 f"| procrastinate {versions['procrastinate']} | `procrastinate_fetch_job_v2(NULL, worker)`, then "
                 "`procrastinate_finish_job_v1(id, 'succeeded', false)` (its default: the job row is kept; "
                 f"`bench/pgbench/peer_procrastinate.sql`), {data['jobs']:,} jobs queued | the job row twice "
                 "(non-HOT: status indexes), two procrastinate_events rows | none |",
                 f"| pgqueuer {versions['pgqueuer']} | its dequeue CTE with batch_size 1, then its log_jobs CTE "
                 f"(`bench/pgbench/peer_pgqueuer.sql`), {data['jobs']:,} jobs queued | the job row updated, then "
                 "deleted; two pgqueuer_log rows | one per finish |", "",
                 "Installed from PyPI into `.venv-peers`, each schema by its own command (`procrastinate schema "
                 "--read`, `pgq sql install --durability durable`), into a database of its own. Not measured: what "
                 "each worker does besides (heartbeats, health checks, pgqueuer's log aggregation every 30 s, "
                 "procrastinate's pool adding an empty query, BEGIN and COMMIT around each statement), and "
                 "pgqueuer's default batch of ten jobs per dequeue, which is another kind of cycle.", "",
                 "| K | proxy-leases | procrastinate | pgqueuer | proxy-leases / the faster peer |",
                 "|---:|---:|---:|---:|---:|")
        behind = []
        for k in clients:
            ours = cells[("proxy_leases", k)]
            best = max(cells[("procrastinate", k)], cells[("pgqueuer", k)])
            if ours <= best:
                behind.append(f"K={k}: {rate(ours)} vs {rate(best)}")
            self.add(f"| {k} | " + " | ".join(rate_and_spread(runs[(system, k)])
                                              for system in ("proxy_leases", "procrastinate", "pgqueuer"))
                     + f" | {ours / best:.2f}× |")
        self.add("")
        self.target(f"Ahead of procrastinate {versions['procrastinate']} and pgqueuer {versions['pgqueuer']} at every "
                    "K (one claim and finish per cycle)",
                    "; ".join(behind) if behind else "ahead at every K, by "
                    f"{min(cells[('proxy_leases', k)] / max(cells[('procrastinate', k)], cells[('pgqueuer', k)]) for k in clients):.2f}× "
                    "at least", not behind)
        figure, axes = plt.subplots(figsize=(7, 4.2))
        for system, label in (("proxy_leases", "proxy-leases: acquire_proxy + release_proxy"),
                              ("procrastinate", f"procrastinate {versions['procrastinate']}: fetch + finish"),
                              ("pgqueuer", f"pgqueuer {versions['pgqueuer']}: dequeue + log_jobs")):
            axes.plot(clients, [cells[(system, k)] for k in clients], "o-", label=label)
        axes.set_xscale("log", base=2)
        axes.minorticks_off()
        axes.set(xticks=clients, xticklabels=[str(k) for k in clients], xlabel="clients (K)",
                 ylabel="cycles per second (median)", title="One claim and finish per cycle, same server")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        self.plot("peers.png", figure)

    # -- the whole page --------------------------------------------------------------------------

    def render(self) -> str:
        results = self.results
        head = ["# proxy-leases: benchmark results", ""]
        if results["quick"]:
            head += ["**Quick mode** (`--quick`): every scenario small and measured once. These figures only show "
                     "that the benchmarks run; the committed results.md comes from a full run.", ""]
        head += ["Reproduce with `scripts/bench` (a throwaway PostgreSQL with pg_cron; about "
                 f"{results['elapsed_s'] / 60:.0f} minutes). Code: `bench/`; raw figures: `results.json`.", "",
                 "| Machine | |", "|---|---|"]
        head += [f"| {key} | {value} |" for key, value in results["machine"].items()]
        head += ["", "| Scenario | Measured at | Revision | Took |", "|---|---|---|---:|"]
        head += [f"| {name} | {scenario.get('measured_at', '—')} | `{scenario.get('revision', '—')}` | "
                 f"{scenario['elapsed_s'] / 60:.1f} min |" for name, scenario in results["scenarios"].items()]
        head += ["", "## Targets", "", "| Target | Measured | |", "|---|---|---|"]
        head += [f"| {what} | {figure} | {verdict(met)} |" for what, figure, met in self.targets]
        return "\n".join(head + [""] + self.lines) + "\n"


def write(results: dict, output: Path) -> list[Path]:
    report = Report(results, output)
    for name in ("sweep", "acquire", "triggers", "recovery", "size", "peers"):
        if name in results["scenarios"]:
            getattr(report, name)(results["scenarios"][name])
    path = output / "results.md"
    path.write_text(report.render(), encoding="utf-8")
    return [path, *report.plots]
