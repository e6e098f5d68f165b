"""Scenario 6: one claim-and-finish cycle against other PostgreSQL queues, on the same server in the same run.

proxy-leases' cycle is acquire_proxy, then release_proxy with the token it returned (two transactions,
the audit trail on, a pool of 10,000 proxies). The peers, installed from PyPI into a virtualenv of their
own (.venv-peers) and into databases of their own by their own schema commands, do their workers' cycle:

  procrastinate 3.10.0   procrastinate_fetch_job_v2, then procrastinate_finish_job_v1 (bench/pgbench/peer_procrastinate.sql)
  pgqueuer 1.6.0         its dequeue, then its log_jobs, batch_size 1 (bench/pgbench/peer_pgqueuer.sql)

Each is driven by pgbench with the SQL its worker sends, so that no Python client is measured; one job
per claim for all three (pgqueuer's default claims ten: see bench/results.md). Every run starts from a
fresh copy of a prefilled database (CREATE DATABASE … TEMPLATE), so that no system runs on the dead rows
of its previous run, and the systems take turns within each round. Each run is checked afterwards: every
cycle pgbench counted finished exactly one job (or one grant, released), and jobs were left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from bench.harness import Harness, check, insert_proxies

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEER_PACKAGES = {"procrastinate": "3.10.0", "pgqueuer": "1.6.0"}
SYSTEMS = {
    "proxy_leases": "acquire_release",
    "procrastinate": "peer_procrastinate",
    "pgqueuer": "peer_pgqueuer",
}
PROXIES = 10_000
MAX_CLIENTS = 16

# procrastinate: one worker row per pgbench client (client n is worker n + 1: the FK on worker_id), and
# the jobs deferred as App.defer does it, through procrastinate_defer_jobs_v1.
PROCRASTINATE_PREFILL = """
SELECT procrastinate_register_worker_v1() FROM generate_series(1, %(workers)d);
SELECT count(*) FROM unnest(procrastinate_defer_jobs_v1(ARRAY(
    SELECT ROW('default', 'bench_task', 0, NULL, NULL, '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1
      FROM generate_series(1, %(jobs)d))));
"""

# pgqueuer: Queries.enqueue's statement (build_enqueue_query, on_conflict "raise") with its six array
# parameters as a batch enqueue binds them: priority 0, entrypoint 'bench', no payload, no delay, no
# dedupe key, headers JSON null.
PGQUEUER_PREFILL = """
WITH input AS MATERIALIZED (
    SELECT nextval((SELECT pg_get_serial_sequence('pgqueuer', 'id'))) AS id,
           priority, entrypoint, payload, execute_after, dedupe_key, headers, ord
      FROM UNNEST(array_fill(0, ARRAY[%(jobs)d])::int[], array_fill('bench'::text, ARRAY[%(jobs)d])::text[],
                  array_fill(NULL::bytea, ARRAY[%(jobs)d])::bytea[],
                  array_fill('0 seconds'::interval, ARRAY[%(jobs)d])::interval[],
                  array_fill(NULL::text, ARRAY[%(jobs)d])::text[], array_fill('null'::jsonb, ARRAY[%(jobs)d])::jsonb[])
           WITH ORDINALITY AS t(priority, entrypoint, payload, execute_after, dedupe_key, headers, ord)
), inserted AS (
    INSERT INTO pgqueuer AS job (id, priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
    SELECT id, priority, entrypoint, payload, execute_after + NOW(), dedupe_key, headers, 'queued' FROM input
    RETURNING id, entrypoint, priority, dedupe_key
), logged AS (
    INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM inserted WHERE id IN (SELECT id FROM input)
)
SELECT count(*) FROM inserted ins JOIN input i ON i.id = ins.id
"""

# What each cycle left behind, to check against pgbench's count: finished jobs (grants), and jobs left.
DONE_AND_LEFT = {
    "proxy_leases": "SELECT (SELECT count(*) FROM proxy_lease_events WHERE event = 'granted'), "
                    "       (SELECT count(*) FROM proxies WHERE NOT is_in_use)",
    "procrastinate": "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'todo') "
                     "  FROM procrastinate_jobs",
    "pgqueuer": "SELECT (SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'), "
                "       (SELECT count(*) FROM pgqueuer WHERE status = 'queued')",
}


def peers_venv() -> Path:
    """A virtualenv with the peers at their pinned versions, made (from PyPI) the first time."""
    bindir = PEERS_VENV / "bin"
    pinned = [f"{name}=={version}" for name, version in PEER_PACKAGES.items()]
    have = ""
    if (bindir / "python").exists():
        have = subprocess.run([str(bindir / "python"), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    if not all(pin in have.splitlines() for pin in pinned):
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        installed = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                    *pinned], capture_output=True, text=True)
        if installed.returncode != 0:
            raise RuntimeError(f"could not install {' '.join(pinned)} into {PEERS_VENV}:\n{installed.stderr}")
    return bindir


def schema_sql(bindir: Path) -> dict[str, str]:
    """Each peer's schema as its own command prints it, without connecting anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PROCRASTINATE", "PGQUEUER"))}

    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    return {
        "procrastinate": run(str(bindir / "procrastinate"), "schema", "--read"),
        "pgqueuer": run(str(bindir / "pgq"), "sql", "install", "--durability", "durable"),
    }


def make_templates(harness: Harness, jobs: int) -> dict[str, str]:
    schemas = schema_sql(peers_venv())
    templates = {}
    for system in SYSTEMS:
        name = f"peers_template_{system}"
        if system == "proxy_leases":
            harness.database(name, "head")
            with harness.connect(name) as conn:
                insert_proxies(conn, PROXIES)
        else:
            with harness.connect("postgres") as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            with harness.connect(name) as conn:
                conn.execute(schemas[system])
                prefill = PROCRASTINATE_PREFILL if system == "procrastinate" else PGQUEUER_PREFILL
                conn.execute(prefill % {"workers": MAX_CLIENTS, "jobs": jobs})  # integers, written in
        with harness.connect(name) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        templates[system] = name
    return templates


def one_run(harness: Harness, system: str, template: str, clients: int, seconds: float) -> float:
    dbname = f"peers_run_{system}"
    with harness.connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
    try:
        with harness.connect(dbname) as conn:
            done_before, _ = conn.execute(DONE_AND_LEFT[system]).fetchone()
        result = harness.pgbench(dbname, SYSTEMS[system], clients, seconds)
        with harness.connect(dbname) as conn:
            done, left = conn.execute(DONE_AND_LEFT[system]).fetchone()
        check(done - done_before == result.cycles,
              f"{system}: pgbench counted {result.cycles} cycles, the database {done - done_before} finished")
        check(left > 0, f"{system}: the queue ran dry during the run; prefill more jobs")
        return result.cycles_per_second
    finally:
        with harness.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')


def run(harness: Harness) -> dict:
    clients = (1, 2) if harness.quick else (1, 2, 4, 8, 16)
    seconds = 1 if harness.quick else 5
    jobs = 5_000 if harness.quick else 60_000
    templates = make_templates(harness, jobs)
    samples: dict[tuple[str, int], list[float]] = {}
    order = list(SYSTEMS)
    for round_number in range(harness.runs):
        for k in clients:
            for system in order:
                samples.setdefault((system, k), []).append(one_run(harness, system, templates[system], k, seconds))
            order = order[1:] + order[:1]  # each system goes first in turn
        print(f"  peers: round {round_number + 1} of {harness.runs} done", flush=True)
    for template in templates.values():
        harness.drop(template)
    cells = [{"system": system, "clients": k, "cycles_per_second": values}
             for (system, k), values in sorted(samples.items())]
    return {"cells": cells, "seconds": seconds, "runs": harness.runs, "jobs": jobs, "proxies": PROXIES,
            "versions": PEER_PACKAGES}
