"""Crash soak: 3 containers x 15 workers (examples/worker.py's run_worker in threads) under random faults,
with an independent checker. Exits 1 when the checker counts any violation.

    scripts/soak                 # 10 minutes; pg_cron's job does the maintenance (once a minute)
    scripts/soak --minutes 2     # shorter
    scripts/soak --sweep thread --lease 5 --sweep-period 1.5    # maintenance from a thread instead
    scripts/soak --server-faults # PostgreSQL itself killed (pg_ctl stop -m immediate) and restarted now and then

It starts a throwaway PostgreSQL with pg_cron, creates a database, runs `alembic upgrade head` on it as a
user would (DATABASE_URL, cron required), shortens the lease in proxy_lease_settings, and writes the
figures to soak/out/ as JSON too. Exit status: 1 when the checker counted a violation, 2 when the run
itself went wrong (the upgrade failed, or a fault or background job raised: see "errors").
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from soak.async_fleet import AsyncFleet  # noqa: E402
from soak.checker import Checker  # noqa: E402
from soak.config import SoakConfig, long_config  # noqa: E402
from soak.faults import FaultInjector  # noqa: E402
from soak.fleet import Fleet  # noqa: E402
from soak.maintenance import Every, feeder, maintenance, operator  # noqa: E402
from soak.records import Records  # noqa: E402
from soak.report import render, summary, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def prepare(url: str, config: SoakConfig) -> dict[str, int]:
    """The lease settings, the pool and the first tasks; returns the pool's address -> id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE proxy_lease_settings SET lease_duration = make_interval(secs => %s), "
                     "orphan_grace = make_interval(secs => %s), heartbeat_timeout = make_interval(secs => %s)",
                     (config.lease, config.orphan_grace, config.heartbeat_timeout))
        conn.execute("INSERT INTO proxies (address) SELECT format('http://10.0.%%s.%%s:3128', n / 250, n %% 250) "
                     "FROM generate_series(1, %s) n", (config.proxies,))
        feeder(config)(conn)
        return dict(conn.execute("SELECT address, id FROM proxies").fetchall())


@contextmanager
def worker_login_role(url: str, config: SoakConfig):
    """The workers' login role for the run: a member of proxy_leases_worker, with no right of its own."""
    if not config.worker_role:
        yield
        return
    role = sql.Identifier(config.worker_role)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE proxy_leases_worker").format(role))
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {role}; DROP ROLE {role}").format(role=role))


def run_soak(url: str, config: SoakConfig, on_sample=None, server=None) -> dict:  # noqa: ANN001
    """Runs a soak on a migrated database (pool and settings are set here) and returns its figures.
    Server faults (config.server_faults, config.server_crash_at) need `server`, the soak's own
    ThrowawayPostgres, which they kill and restart."""
    with worker_login_role(url, config):
        return _run_soak(url, config, on_sample, server)


def _run_soak(url: str, config: SoakConfig, on_sample=None, server=None) -> dict:  # noqa: ANN001
    rng = random.Random(config.seed)
    address_ids = prepare(url, config)
    records = Records()
    stop = threading.Event()
    checker = Checker(url, records, config.i3_bound, config.lease)
    background = [Every("feeder", url, 1.0, feeder(config), records, stop),
                  Every("operator", url, 1.0, operator(config, records), records, stop)]
    if config.sweep == "thread":
        background.append(Every("maintenance", url, config.sweep_period, maintenance(records), records, stop))
    fleet = Fleet(url, config, records, rng, address_ids)
    async_fleet = AsyncFleet(url, config, records, rng) if config.async_workers else None
    injector = FaultInjector(fleet, records, rng, stop, server=server, async_fleet=async_fleet)
    started = time.monotonic()
    for thread in background:
        thread.start()
    fleet.start()
    if async_fleet:
        async_fleet.start()
    injector.start()
    try:
        while time.monotonic() - started < config.seconds:
            checker.sample()
            if on_sample:
                on_sample(checker)
            time.sleep(config.sample_every)
    finally:
        stop.set()
        injector.join(15)
        if async_fleet:
            async_fleet.shutdown()
        fleet.shutdown()
        for thread in background:
            thread.join(15)
    elapsed = time.monotonic() - started
    checked = checker.finish()
    return summary(config, records, checked, elapsed, {})


def pg_cron_runs(pg, dbname: str) -> dict:  # noqa: ANN001
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        return dict(conn.execute(
            "SELECT d.status, count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
            "WHERE j.database = %s AND j.jobname LIKE 'proxy_leases_sweep.%%' GROUP BY 1", (dbname,)).fetchall())


def migrate_fleet_database(pg, cron: bool, dbname: str = "fleet") -> str:  # noqa: ANN001
    """pg_cron in its database, a database for the fleet, `alembic upgrade head` on it as a user would
    (DATABASE_URL; with `cron`, pg_cron's job required, every minute); returns its URL. RuntimeError with Alembic's output
    when the upgrade fails."""
    from tools.harness import CRON_DATABASE, alembic_cli

    with psycopg.connect(pg.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_cron")
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = pg.url(dbname)
    # Every minute whatever the pg_cron version (1.5 and later would get every 10 s): I3's bound
    # counts one sweep period of config.sweep_period.
    upgrade = alembic_cli("upgrade", "head", env={
        "DATABASE_URL": url, "PROXY_LEASES_CRON": "require" if cron else "off",
        "PROXY_LEASES_CRON_SCHEDULE": "* * * * *"})
    if upgrade.returncode != 0:
        raise RuntimeError(f"alembic upgrade head failed:\n{upgrade.stdout}\n{upgrade.stderr}")
    return url


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM, and SIGINT even where a shell started us in the background with it ignored, end the run
    # through the with-blocks below, so that the throwaway server is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sweep", choices=("cron", "thread"), default="cron")
    parser.add_argument("--lease", type=float, default=30.0, help="lease_duration in seconds")
    parser.add_argument("--sweep-period", type=float, default=None,
                        help="with --sweep thread (default 60 s with cron: pg_cron 1.4 fires once a minute)")
    parser.add_argument("--proxies", type=int, default=80)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--server-faults", action="store_true",
                        help="also kill PostgreSQL (pg_ctl stop -m immediate) now and then, and start it again")
    args = parser.parse_args()
    if args.sweep == "cron" and args.sweep_period not in (None, 60):
        parser.error("with --sweep cron the period is pg_cron's: 60 s")
    config = long_config(
        args.lease, seconds=args.minutes * 60, proxies=args.proxies, sweep=args.sweep,
        sweep_period=args.sweep_period or (60.0 if args.sweep == "cron" else 1.5), seed=args.seed,
        server_faults=args.server_faults)

    from tools.harness import ThrowawayPostgres

    dbname = "fleet"
    print(f"soak: starting a throwaway PostgreSQL with pg_cron; {args.minutes:g} minutes", flush=True)
    # fsync=off (the harness's default) loses nothing committed when only the server's processes die: the
    # WAL is in the OS page cache. With server faults the run's server is durable all the same, as in
    # production (a machine losing power would need it; the soak does not cut the power).
    settings = ("max_connections=300",) + (("fsync=on",) if config.crashes_server else ())
    with ThrowawayPostgres(preload_pg_cron=True, settings=settings) as pg:
        try:
            url = migrate_fleet_database(pg, config.sweep == "cron", dbname)
        except RuntimeError as failed:
            print(failed, file=sys.stderr)
            return 2
        result = run_soak(url, config, server=pg)
        if config.sweep == "cron":
            result["pg_cron_runs"] = pg_cron_runs(pg, dbname)
        with psycopg.connect(url) as conn:
            result["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    print(render(result))
    path = write_json(result, args.output, time.strftime("soak-%Y%m%d-%H%M%S.json", time.gmtime()))
    write_json(result, args.output, "latest.json")
    print(f"wrote {path}")
    if any(result["checker"]["violations"].values()):
        return 1
    if result["errors"]:
        print("soak: the run itself had errors (above): its figures may not mean what they say", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
