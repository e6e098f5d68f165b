"""Schedule proxy-leases' periodic work with pg_cron, from the database where pg_cron lives.

pg_cron is created in one database per server (cron.database_name, usually postgres), often not the
fleet's. The job is scheduled there with cron.schedule_in_database over a second connection, and is
named after the fleet's database, so several fleet databases on one server each get their own job.
"""

from __future__ import annotations

import logging
import os
import re

import sqlalchemy as sa
from alembic import context
from sqlalchemy import pool

log = logging.getLogger("alembic.proxy_leases")

# What the job runs: 0005_sweep_schedule's sweep, then 0009_maintenance_schedule's full maintenance.
SWEEP_COMMAND = "SELECT public.release_stuck_proxies()"
MAINTENANCE_COMMAND = "CALL public.run_lease_maintenance()"
MODES = ("auto", "require", "off")


class PgCronUnavailable(RuntimeError):
    pass


def job_name(dbname: str) -> str:
    return f"proxy_leases_sweep.{dbname}"


def option(name: str, env: str, default: str | None = None) -> str | None:
    return context.get_x_argument(as_dictionary=True).get(name) or os.environ.get(env) or default


def cron_mode() -> str:
    mode = option("cron", "PROXY_LEASES_CRON", "auto")
    if mode not in MODES:
        raise SystemExit(f"proxy-leases: cron={mode!r}; expected one of {', '.join(MODES)}")
    return mode


def default_schedule(extversion: str) -> str:
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", extversion).groups())
    return "10 seconds" if (major, minor) >= (1, 5) else "* * * * *"


def unavailable(mode: str, message: str, command: str) -> None:
    if mode == "require":
        raise PgCronUnavailable(message + " (cron=require was given, so the upgrade stops here)")
    log.warning(
        "%s. Nothing will run %r by itself: schedule it from any scheduler "
        "(see README, 'Without pg_cron'), or pass -x cron=require to make this an error.",
        message, command,
    )


def _cron_engine(bind: sa.Connection, cron_db: str) -> sa.Engine:
    return sa.create_engine(bind.engine.url.set(database=cron_db), poolclass=pool.NullPool)


def _databases(bind: sa.Connection) -> tuple[str, str | None]:
    """(the fleet's database, the database pg_cron lives in, or None where it is not preloaded).

    Reading shared_preload_libraries needs pg_read_all_settings; a savepoint keeps a refusal from
    aborting the revision's transaction.
    """
    with bind.begin_nested():
        app_db = bind.exec_driver_sql("SELECT current_database()").scalar()
        libraries = bind.exec_driver_sql("SHOW shared_preload_libraries").scalar() or ""
        if "pg_cron" not in [lib.strip().strip('"') for lib in libraries.split(",")]:
            return app_db, None
        cron_db = bind.exec_driver_sql("SELECT current_setting('cron.database_name', true)").scalar()
    return app_db, cron_db or "postgres"


def _pg_cron_version(cron: sa.Connection) -> str | None:
    return cron.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").scalar()


def _unschedule(cron: sa.Connection, name: str) -> int:
    # By jobid: cron.unschedule('a name that does not exist') raises.
    return cron.execute(
        sa.text("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = :name"), {"name": name}
    ).rowcount


def schedule_sweeper(op) -> None:
    schedule_job(op, SWEEP_COMMAND)


def schedule_job(op, command: str) -> None:
    """Create or replace this database's job so that it runs `command`."""
    mode = cron_mode()
    if mode == "off":
        log.info("cron=off: pg_cron left alone; run %r from your own scheduler", command)
        return
    if op.get_context().as_sql:
        _print_offline_instructions(op, scheduling=True, command=command)
        return

    bind = op.get_bind()
    try:
        app_db, cron_db = _databases(bind)
    except sa.exc.DBAPIError as error:
        unavailable(mode, f"could not tell whether pg_cron is preloaded ({error.orig}); the role that "
                          "runs the upgrade needs pg_read_all_settings (see README, 'The pg_cron job')", command)
        return
    if cron_db is None:
        unavailable(mode, "pg_cron is not in shared_preload_libraries on this server", command)
        return

    try:
        with _cron_engine(bind, cron_db).begin() as cron:
            extversion = _pg_cron_version(cron)
            if extversion is None:
                cron.exec_driver_sql("CREATE EXTENSION pg_cron")
                extversion = _pg_cron_version(cron)
                log.info("created extension pg_cron %s in database %s", extversion, cron_db)
            schedule = option("cron_schedule", "PROXY_LEASES_CRON_SCHEDULE") or default_schedule(extversion)
            # pg_cron 1.4 re-schedules an existing name without moving it to another database,
            # so the old job goes first.
            _unschedule(cron, job_name(app_db))
            jobid = cron.execute(
                sa.text("SELECT cron.schedule_in_database(:name, :schedule, :command, :db)"),
                {"name": job_name(app_db), "schedule": schedule, "command": command, "db": app_db},
            ).scalar()
    except sa.exc.DBAPIError as error:
        unavailable(mode, f"pg_cron in database {cron_db} could not be used: {error.orig}".rstrip(), command)
        return
    log.info(
        "pg_cron job %d %r in database %s runs %r in database %s on schedule %r",
        jobid, job_name(app_db), cron_db, command, app_db, schedule,
    )


def unschedule_sweeper(op) -> None:
    if cron_mode() == "off":
        return
    if op.get_context().as_sql:
        _print_offline_instructions(op, scheduling=False)
        return
    bind = op.get_bind()
    try:
        app_db, cron_db = _databases(bind)
    except sa.exc.DBAPIError as error:
        log.warning("could not tell where pg_cron lives (%s): remove job %r by hand", error.orig,
                    job_name(bind.engine.url.database))
        return
    if cron_db is None:
        return
    try:
        with _cron_engine(bind, cron_db).begin() as cron:
            if cron.exec_driver_sql("SELECT to_regclass('cron.job')").scalar() is None:
                return
            removed = _unschedule(cron, job_name(app_db))
    except sa.exc.DBAPIError as error:
        log.warning(
            "could not remove pg_cron job %r from database %s (%s). Remove it there by hand: "
            "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '%s'",
            job_name(app_db), cron_db, error.orig, job_name(app_db),
        )
        return
    log.info("removed %d pg_cron job(s) %r from database %s", removed, job_name(app_db), cron_db)


def _print_offline_instructions(op, *, scheduling: bool, command: str = SWEEP_COMMAND) -> None:
    """--sql cannot reach a second database: say exactly what to run there instead."""
    app_db = context.config.attributes.get("offline_database") or "<this database>"
    name = job_name(app_db)
    # Offline, the pg_cron version is unknown: every minute works on all of them.
    schedule = option("cron_schedule", "PROXY_LEASES_CRON_SCHEDULE") or "* * * * *"
    if scheduling:
        lines = [
            "pg_cron: this step needs the database named by cron.database_name (usually postgres).",
            "Run there, as the user that owns the fleet's tables:",
            f"  SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '{name}';",
            f"  SELECT cron.schedule_in_database('{name}', '{schedule}', '{command}', '{app_db}');",
        ]
    else:
        lines = [
            "pg_cron: in the database named by cron.database_name, run:",
            f"  SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '{name}';",
        ]
    op.execute(sa.text("\n".join("-- " + line for line in lines)))
