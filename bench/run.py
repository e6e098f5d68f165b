"""Runs every benchmark scenario on one throwaway PostgreSQL and writes results.md and the plots.

    scripts/bench                      # the full run (about 30 minutes): bench/results.md, bench/*.png
    scripts/bench --quick              # every scenario, small and short (about a minute), into bench/out/

The full run's figures are medians of several runs; --quick measures each thing once and is there
so that a test can run every scenario end to end (tests/benchmarks/test_bench_quick.py): its figures mean little.
--only names scenarios to run (sweep, acquire, triggers, recovery, size, peers); the others' figures are kept
from the results.json already in the output folder, each with the date and revision it was measured at.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    report, scenario_acquire, scenario_peers, scenario_recovery, scenario_size, scenario_sweep, scenario_triggers,
)
from bench.harness import Harness, machine  # noqa: E402
from tools.harness import CRON_DATABASE, HEAD  # noqa: E402

SCENARIOS = {
    "sweep": scenario_sweep,
    "acquire": scenario_acquire,
    "triggers": scenario_triggers,
    "recovery": scenario_recovery,
    "size": scenario_size,
    "peers": scenario_peers,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and short: checks that every scenario runs")
    parser.add_argument("--output", type=Path,
                        help="where results.md, results.json and the plots go (default: bench/, with --quick bench/out/)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args()
    # A quick run must never overwrite the committed figures of a full one.
    args.output = args.output or Path(__file__).resolve().parent / ("out" if args.quick else "")
    args.output.mkdir(parents=True, exist_ok=True)

    previous = args.output / "results.json"
    results: dict = {"quick": args.quick, "scenarios": {}}
    if set(args.only) != set(SCENARIOS) and previous.exists():
        kept = json.loads(previous.read_text(encoding="utf-8"))
        if kept["quick"] == args.quick:
            results["scenarios"] = {name: kept["scenarios"][name] for name in kept["scenarios"] if name not in args.only}
    with Harness(quick=args.quick) as harness:
        with harness.connect(CRON_DATABASE) as conn:
            results["machine"] = machine(conn)
        for name in args.only:
            print(f"{name}: {SCENARIOS[name].__doc__.splitlines()[0]}", flush=True)
            started = time.perf_counter()
            results["scenarios"][name] = SCENARIOS[name].run(harness)
            results["scenarios"][name].update(
                elapsed_s=time.perf_counter() - started,
                measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                revision=HEAD,
            )
    results["scenarios"] = {name: results["scenarios"][name] for name in SCENARIOS if name in results["scenarios"]}
    results["elapsed_s"] = sum(scenario["elapsed_s"] for scenario in results["scenarios"].values())

    (args.output / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    written = report.write(results, args.output)
    print(f"wrote {', '.join(str(path) for path in written)} in {results['elapsed_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
