"""Where a proxy write's time goes at head: the same pgbench scripts on copies of the head database,
each with one part of the design switched off, against today's schema on the same server; and the sweep freeing 16 proxies on the same copies.

    .venv/bin/python bench/write_cost.py                        # 3 rounds, K = 1, 4, 16, 5 s a run
    .venv/bin/python bench/write_cost.py --rounds 5 --clients 16 --scripts two_updates
    .venv/bin/python bench/write_cost.py --scripts sweep        # the sweep only (about 3 minutes)

Copies (all at head, 10,000 proxies and 100,000 tasks, as bench/scenario_triggers.py loads them):

  head         as installed
  no_pin       the hot functions without their pinned search_path (ALTER FUNCTION … RESET search_path)
  no_audit     the audit trail off (record_lease_events = false), as an operator can set it
  no_wakeup    the wake-up check (announce_proxy_available) disabled: no NOTIFY for LISTENing workers
  no_triggers  every trigger on proxies disabled and its check constraints dropped: what the new columns
               and partial indexes alone cost (two_updates only: the lease API needs its triggers)

Scripts (bench/pgbench/): two_updates (the two bare writes of a cycle), acquire_release (the lease
API; on today's schema two_updates stands in, as the limit), task_cycle (the fleet's own four
statements); sweep (release_stuck_proxies() freeing 16 of 10,000 proxies, scenario 1's fleet, server
time, median of 201 rolled-back calls a round). Durable settings (fsync on), as scripts/bench. The copies are experiments, never a
setting to run: no_pin opens the hostile-search-path hole README's "Roles and rights" closes, and
no_triggers drops every guarantee. Prints one line per cell: median cycles per second, the share of
today's schema, and each round's figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare_revisions import Server, create_database, pgbench, prepare_tasks  # noqa: E402
from bench.compare_revisions import alembic  # noqa: E402
from bench.harness import LEGACY, median_ms  # noqa: E402
from bench.scenario_sweep import TIMED_SWEEP, load_legacy_fleet  # noqa: E402
from bench.scenario_triggers import load  # noqa: E402

HOT_FUNCTIONS = ("acquire_proxy(text, interval)", "release_proxy(bigint, bigint)",
                 "tg_proxies__keep_lease_consistent()", "tg_proxies__record_lease_events()",
                 "tg_proxies__announce_available()", "tg_tasks__release_proxy_on_task_exit()")
COPIES = {
    "head": [],
    "no_pin": [f"ALTER FUNCTION public.{f} RESET search_path" for f in HOT_FUNCTIONS],
    "no_audit": ["UPDATE proxy_lease_settings SET record_lease_events = false"],
    "no_wakeup": ["ALTER TABLE proxies DISABLE TRIGGER announce_proxy_available"],
    "no_triggers": [
        "ALTER TABLE proxies DISABLE TRIGGER USER",
        "DO $$DECLARE c record; BEGIN FOR c IN SELECT conname FROM pg_constraint "
        "WHERE conrelid = 'public.proxies'::regclass AND contype = 'c' LOOP "
        "EXECUTE format('ALTER TABLE public.proxies DROP CONSTRAINT %I', c.conname); END LOOP; END$$",
    ],
}
TRIGGERS_NEEDED = ("acquire_release", "task_cycle", "sweep")
SWEEP_PROXIES = 10_000


def build_sweep_copies(server: Server) -> None:
    """Scenario 1's fleet at 10,000 proxies, upgraded to head, then one copy per entry of COPIES."""
    create_database(server, ROOT, "sweep_base", LEGACY, False)
    with server.connect("sweep_base") as conn:
        load_legacy_fleet(conn, SWEEP_PROXIES, 10 * SWEEP_PROXIES)
    alembic(ROOT, server.pg.url("sweep_base"), "upgrade", "head")
    with server.connect("sweep_base") as conn:
        # As if the orphan grace had passed: the sweep checks every held proxy against the tasks.
        conn.execute("UPDATE proxies SET leased_at = leased_at - interval '2 minutes' WHERE is_in_use")
    for name, statements in COPIES.items():
        with server.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "sweep_{name}" TEMPLATE sweep_base')
        with server.connect(f"sweep_{name}") as conn:
            for statement in statements:
                conn.execute(statement)
            conn.execute("VACUUM ANALYZE")


def sweep_ms(server: Server, side: str) -> float:
    with server.connect(f"sweep_{side}") as conn:
        return median_ms(conn, TIMED_SWEEP, 201, vacuum="proxies")["server"]


def prepare(server: Server, dbname: str, script: str, today: bool) -> None:
    """Every run starts with the clients' proxies free and their tasks pending."""
    if today:
        with server.connect(dbname) as conn:
            conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE is_in_use")
            conn.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE id <= 16")
            conn.execute("VACUUM catalog_tasks, proxies")
    else:
        prepare_tasks(server, dbname, held=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--scripts", nargs="+", default=["two_updates", "acquire_release", "task_cycle", "sweep"],
                        choices=["two_updates", "acquire_release", "task_cycle", "sweep"])
    args = parser.parse_args()
    rates: dict[tuple[str, int, str], list[float]] = {}
    with Server("on") as server:
        create_database(server, ROOT, "today", LEGACY, False)
        load(server, "today")
        for name, statements in COPIES.items():
            create_database(server, ROOT, name, "head", False)
            load(server, name)
            with server.connect(name) as conn:
                for statement in statements:
                    conn.execute(statement)
        if "sweep" in args.scripts:
            build_sweep_copies(server)
        sides = ["today", *COPIES]
        for round_number in range(args.rounds):
            # The order of the databases turns round every round, so that a slow minute falls on all.
            for script in args.scripts:
                for clients in args.clients:
                    for side in (sides if round_number % 2 == 0 else reversed(sides)):
                        if side == "no_triggers" and script in TRIGGERS_NEEDED:
                            continue
                        if script == "sweep":
                            if side != "today" and clients == args.clients[0]:
                                rates.setdefault((script, 0, side), []).append(sweep_ms(server, side))
                            continue
                        prepare(server, side, script, side == "today")
                        run_script = "two_updates" if side == "today" and script == "acquire_release" else script
                        run = pgbench(server, side, run_script, clients, args.seconds)
                        rates.setdefault((script, clients, side), []).append(run["tps"])
    for (script, clients, side), values in sorted(rates.items()):
        if script == "sweep":
            print(f"{'sweep':16} {'':5} {side:12} {statistics.median(values):8.3f} ms "
                  f"{statistics.median(values) / statistics.median(rates[(script, 0, 'head')]):5.2f}× of head  "
                  f"{[round(v, 3) for v in values]}")
            continue
        today = statistics.median(rates[(script, clients, "today")])
        print(f"{script:16} K={clients:<3} {side:12} {statistics.median(values):8,.0f} /s "
              f"{statistics.median(values) / today:5.2f}×  {[round(v) for v in values]}")


if __name__ == "__main__":
    main()
