"""Scenario 3: what the project's triggers cost the fleet's own writes: heartbeats and task status changes.

The same pgbench scripts, the fleet's statements unchanged, on two databases with the same data
(10,000 proxies, 100,000 tasks): one at the baseline revision (the tables as they are today, no
triggers) and one at head (the lease triggers, the release trigger, the audit trail, the indexes).

  heartbeat           UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() for the client's task in processing
  heartbeat_every_3s  the same UPDATE, each heartbeat 3 s after the last on the worker's clock (a fleet's cadence)
  task_cycle          claim the task, take the proxy, finish the task, give the proxy back (four transactions)
"""

from __future__ import annotations

from bench.harness import LEGACY, Harness, check, insert_proxies, insert_task_history

SCRIPTS = ("heartbeat", "heartbeat_every_3s", "task_cycle")
PROXIES = 10_000
TASKS = 100_000
MAX_CLIENTS = 16


def load(harness: Harness, dbname: str) -> None:
    with harness.connect(dbname) as conn:
        insert_proxies(conn, PROXIES)
        # Tasks 1 to 16 belong to the pgbench clients; the rest is history.
        conn.execute("INSERT INTO catalog_tasks (status) SELECT 'pending' FROM generate_series(1, %s)", (MAX_CLIENTS,))
        insert_task_history(conn, TASKS // 2)
        conn.execute("VACUUM ANALYZE")


def prepare(harness: Harness, dbname: str, script: str) -> None:
    """Heartbeats need each client's task in processing and its proxy held; a task cycle starts from free."""
    with harness.connect(dbname) as conn:
        conn.execute("UPDATE catalog_tasks SET status = 'pending', worker_id = NULL WHERE id <= %s", (MAX_CLIENTS,))
        conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL WHERE is_in_use")
        if script.startswith("heartbeat"):
            conn.execute("UPDATE catalog_tasks SET status = 'processing', worker_id = 'bench_' || (id - 1), "
                         "heartbeat_at = clock_timestamp() WHERE id <= %s", (MAX_CLIENTS,))
            conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'bench_' || (id - 1) WHERE id <= %s",
                         (MAX_CLIENTS,))
        conn.execute("VACUUM catalog_tasks, proxies")


def run(harness: Harness) -> dict:
    clients = (1, 2) if harness.quick else (1, 4, 16)
    seconds = 1 if harness.quick else 8
    # Five rounds, not the harness's three: the heartbeat's target (0.95 of today's) is finer than the
    # spread of three runs of an fsync-bound statement on this disk.
    rounds = harness.runs if harness.quick else 5
    databases = {"without": "triggers_legacy", "with": "triggers_head"}
    harness.database(databases["without"], LEGACY)
    harness.database(databases["with"], "head")
    for dbname in databases.values():
        load(harness, dbname)

    samples: dict[tuple[str, int, str], list[float]] = {}
    for round_number in range(rounds):
        # The two sides take turns going first, so that a slow minute of the machine falls on both.
        sides = list(databases.items()) if round_number % 2 == 0 else list(reversed(databases.items()))
        for script in SCRIPTS:
            for k in clients:
                for side, dbname in sides:
                    prepare(harness, dbname, script)
                    result = harness.pgbench(dbname, script, k, seconds)
                    samples.setdefault((script, k, side), []).append(result.cycles_per_second)
        print(f"  triggers: round {round_number + 1} of {rounds} done", flush=True)

    with harness.connect(databases["with"]) as conn:
        # The triggers did their work: every task cycle at head freed its proxy as the task finished.
        released_on_exit = conn.execute(
            "SELECT count(*) FROM proxy_lease_events WHERE event = 'released' AND reason = 'task_finished'"
        ).fetchone()[0]
    check(released_on_exit > 0, "no proxy was released by the task-exit trigger at head")
    cells = [{"script": script, "clients": k, "side": side, "cycles_per_second": values}
             for (script, k, side), values in sorted(samples.items())]
    return {"cells": cells, "seconds": seconds, "runs": rounds, "released_on_task_exit": released_on_exit}
