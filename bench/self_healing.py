"""What acquire_proxy's take-over (0022_self_healing) costs: the normal path, a pool exhausted by live
leases, and a pool exhausted by dead workers' leases, at 0021_maintenance_health and at head, on one
server (fsync on).

    .venv/bin/python bench/self_healing.py                  # pools of 100 and 10,000; 3 rounds of 300 calls
    .venv/bin/python bench/self_healing.py --pools 10000 --rounds 5

Each call is one acquire_proxy in its own rolled-back transaction, so every call sees the same pool
(bench/harness.py's median_ms: client time, and the server's own time for the statement). Paths:

  free       a proxy is free: the normal path (the take-over code is never reached)
  all_live   every proxy held under a live lease: no row, at 0021 at once, at head after one pass
             over the held proxies looking for a lease that ran out
  all_dead   every proxy held by a dead worker whose lease ran out: at 0021 no row (the fleet waits
             for the sweep), at head one proxy freed (strike, audit event) and granted

Prints one line per cell: the median of the rounds' medians, in ms, and each round's figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare_revisions import Server, create_database  # noqa: E402
from bench.harness import median_ms  # noqa: E402

SIDES = {"0021": "0021_maintenance_health", "head": "head"}
CALL = ("SELECT (SELECT count(*) FROM acquire_proxy('bench0001_1')), "
        "extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000")
PATHS = {
    "free": "UPDATE proxies SET is_in_use = false WHERE id = (SELECT min(id) FROM proxies)",
    "all_live": None,
    "all_dead": "UPDATE proxies SET leased_until = now() - interval '1 second'",
}


def prepare(server: Server, dbname: str, proxies: int, path: str) -> None:
    with server.connect(dbname) as conn:
        conn.execute("DELETE FROM proxies")
        conn.execute("INSERT INTO proxies (address) SELECT 'http://10.1.' || n / 250 || '.' || n %% 250 || ':3128' "
                     "FROM generate_series(1, %s) n", (proxies,))
        conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'live' || id || '_1'")
        if PATHS[path]:
            conn.execute(PATHS[path])
        conn.execute("VACUUM ANALYZE proxies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with Server("on") as server:
        for side, revision in SIDES.items():
            create_database(server, ROOT, side, revision, via_downgrade=False)
        for proxies in args.pools:
            for path in PATHS:
                rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
                for side in SIDES:
                    prepare(server, side, proxies, path)
                for _ in range(args.rounds):
                    for side in SIDES:
                        with server.connect(side) as conn:
                            with conn.transaction(force_rollback=True):
                                granted = conn.execute(CALL).fetchone()[0]
                            rounds[side].append({**median_ms(conn, CALL, args.calls, vacuum="proxies"),
                                                 "granted": granted})
                for side in SIDES:
                    client = [r["client"] for r in rounds[side]]
                    server_ms = [r["server"] for r in rounds[side]]
                    print(f"{proxies:>6} proxies  {path:<9} {side:<5} granted={rounds[side][0]['granted']}  "
                          f"client {statistics.median(client):.3f} ms  server {statistics.median(server_ms):.3f} ms  "
                          f"(rounds: {', '.join(f'{c:.3f}' for c in client)})", flush=True)


if __name__ == "__main__":
    main()
