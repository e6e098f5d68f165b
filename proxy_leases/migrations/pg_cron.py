"""Schedule proxy-leases' periodic work with pg_cron, from the database where pg_cron lives.

pg_cron is created in one database per server (cron.database_name, usually postgres), often not the
fleet's. The job is scheduled there with cron.schedule_in_database over a second connection, and is
named after the fleet's database, so several fleet databases on one server each get their own job.
"""

from __future__ import annotations

import contextlib
import logging
import re

import sqlalchemy as sa
from alembic import context
from sqlalchemy import pool

from proxy_leases.migrations.options import DEFAULT_LOCK_TIMEOUT, LOCK_SQLSTATES, option

log = logging.getLogger("alembic.proxy_leases")

# What the job runs: 0005_sweep_schedule's sweep, then 0009_maintenance_schedule's full maintenance.
SWEEP_COMMAND = "SELECT public.release_stuck_proxies()"
MAINTENANCE_COMMAND = "CALL public.run_lease_maintenance()"
MODES = ("auto", "require", "off")
# 0011_cron_history_retention: pg_cron logs every run in cron.job_run_details and never deletes any;
# a job every minute adds 1,440 rows a day. This second job, in the pg_cron database, prunes ours.
HISTORY_SCHEDULE = "17 * * * *"
HISTORY_RETENTION = "7 days"


class PgCronUnavailable(RuntimeError):
    pass


class SettingsHidden(RuntimeError):
    """The role may not read shared_preload_libraries; `orig` words it as the server would."""

    def __init__(self, role: str) -> None:
        self.orig = ("must be superuser or have privileges of pg_read_all_settings to examine "
                     f"\"shared_preload_libraries\" (role {role} has neither)")
        super().__init__(self.orig)


def job_name(dbname: str) -> str:
    return f"proxy_leases_sweep.{dbname}"


def history_job_name(dbname: str) -> str:
    return f"proxy_leases_prune_history.{dbname}"


def _literal(text: str) -> str:
    """A SQL string literal, whatever standard_conforming_strings says: E'' where there is a backslash."""
    quoted = "'" + text.replace("'", "''") + "'"
    return "E" + quoted.replace("\\", "\\\\") if "\\" in text else quoted


def history_command(app_db: str, retention: str) -> str:
    """Delete this database's job runs older than `retention`: the maintenance job's and this job's own,
    found by name, and those of jobs since replaced (a re-schedule gives a new jobid), found by command:
    the maintenance in the fleet's database, and this job's earlier versions here, which name it."""
    names = ", ".join(_literal(name) for name in (job_name(app_db), history_job_name(app_db)))
    commands = ", ".join(_literal(command) for command in (MAINTENANCE_COMMAND, SWEEP_COMMAND))
    own_mark = _literal(f"database = {_literal(app_db)} AND command IN")
    return (
        "DELETE FROM cron.job_run_details"
        f" WHERE coalesce(end_time, start_time) < now() - interval {_literal(retention)}"
        f" AND (jobid IN (SELECT jobid FROM cron.job WHERE jobname IN ({names}))"
        f" OR (database = {_literal(app_db)} AND command IN ({commands}))"
        " OR (database = current_database() AND starts_with(command, 'DELETE FROM cron.job_run_details')"
        f" AND strpos(command, {own_mark}) > 0))"
    )


def history_retention() -> str:
    retention = option("cron_history_retention", "PROXY_LEASES_CRON_HISTORY_RETENTION", HISTORY_RETENTION)
    if not re.fullmatch(r"[1-9][0-9]* (minute|hour|day|week|month)s?", retention):
        raise SystemExit(f"proxy-leases: cron_history_retention={retention!r}; expected a number and a unit, "
                         "e.g. '7 days' or '12 hours'")
    return retention


def cron_mode() -> str:
    mode = option("cron", "PROXY_LEASES_CRON", "auto")
    if mode not in MODES:
        raise SystemExit(f"proxy-leases: cron={mode!r}; expected one of {', '.join(MODES)}")
    return mode


def default_schedule(extversion: str) -> str:
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", extversion).groups())
    return "10 seconds" if (major, minor) >= (1, 5) else "* * * * *"


def unavailable(mode: str, message: str, command: str) -> None:
    """pg_cron could not be used for this step: an error with cron=require; otherwise the step goes on
    and the end-of-run summary (run_summary.py) says, once, what is missing and how to fix it."""
    if mode == "require":
        raise PgCronUnavailable(message + " (cron=require was given, so the upgrade stops here)")
    log.debug("%s; %r is not scheduled by this step", message, command)


def _cron_engine(bind: sa.Connection, cron_db: str) -> sa.Engine:
    """The second connection, under the same lock_timeout as the revision's own (migrations/env.py)."""
    return sa.create_engine(bind.engine.url.set(database=cron_db), poolclass=pool.NullPool,
                            connect_args=context.config.attributes.get("connect_args", {}))


@contextlib.contextmanager
def _cron_transaction(bind: sa.Connection, cron_db: str):
    """A transaction in pg_cron's database that ends with the revision's own.

    It commits just before the revision's transaction does, after alembic_version is updated, and rolls
    back if the revision fails after it: a job is not changed by a revision that did not happen. (Two
    databases cannot commit as one; what is left is the instant between the two commits. Should the
    revision's own COMMIT fail then, the job is changed and alembic_version is not: running the step
    again converges, since scheduling and unscheduling a job are idempotent.)
    """
    engine = _cron_engine(bind, cron_db)
    cron = engine.connect()
    transaction = cron.begin()
    done = []

    def end(commit: bool) -> None:
        if done:
            return
        done.append(commit)
        try:
            if commit:
                transaction.commit()
            else:
                try:
                    transaction.rollback()
                except sa.exc.DBAPIError as error:  # the error that brought us here matters more
                    log.warning("could not roll back in pg_cron's database %s: %s", cron_db, error.orig)
        finally:
            cron.close()
            engine.dispose()

    def on_commit(_conn) -> None:  # noqa: ANN001
        end(commit=True)

    def on_rollback(_conn) -> None:  # noqa: ANN001
        end(commit=False)

    try:
        yield cron
    except BaseException:
        end(commit=False)
        raise
    if not bind.in_transaction():
        end(commit=True)
        return
    sa.event.listen(bind, "commit", on_commit)
    sa.event.listen(bind, "rollback", on_rollback)


def _raise_if_lock_timeout(error: sa.exc.DBAPIError, cron_db: str) -> None:
    """A lock on cron.job that this second connection cannot have within lock_timeout stops the revision
    (migrations/env.py then says what to do), whatever the cron mode: it is not pg_cron missing."""
    if getattr(error.orig, "sqlstate", None) in LOCK_SQLSTATES:
        error.proxy_leases_database = cron_db
        raise error


def _current_database(bind: sa.Connection) -> str:
    # Not the URL's: a URL may name no database (libpq then takes PGDATABASE or the user name).
    return bind.exec_driver_sql("SELECT current_database()").scalar()


def _lock_timeout() -> str:
    return context.config.attributes.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT


def _offline_database() -> str:
    return context.config.attributes.get("offline_database") or "<this database>"


def _command_text(command, app_db: str) -> str:
    """`command` is the SQL, or a function of the fleet's database name that returns it."""
    return command(app_db) if callable(command) else command


def _databases(bind: sa.Connection) -> tuple[str, str | None]:
    """(the fleet's database, the database pg_cron lives in, or None where it is not preloaded).

    Reading shared_preload_libraries needs pg_read_all_settings. A role without it is told so without
    asking (SettingsHidden): the refusal would be an ERROR in the server's log, where a fleet may alert
    on it. A savepoint keeps any other refusal from aborting the revision's transaction.
    """
    with bind.begin_nested():
        app_db = _current_database(bind)
        if not bind.exec_driver_sql("SELECT pg_has_role('pg_read_all_settings', 'USAGE')").scalar():
            raise SettingsHidden(bind.exec_driver_sql("SELECT current_user").scalar())
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


def schedule_history_pruning(op) -> None:
    schedule_job(op, lambda app_db: history_command(app_db, history_retention()),
                 name=history_job_name, schedule=HISTORY_SCHEDULE, in_cron_database=True)


def schedule_job(op, command, *, name=job_name, schedule: str | None = None, in_cron_database: bool = False) -> None:
    """Create or replace this database's job `name(database)` so that it runs `command`.

    `command` is the SQL, or a function of the fleet's database name that returns it. The job runs in the
    fleet's database, or with `in_cron_database` in pg_cron's own. `schedule` overrides the -x cron_schedule
    option and the default.
    """
    mode = cron_mode()
    if mode == "off":
        if in_cron_database:  # pg_cron's own housekeeping: nothing a scheduler of the fleet's should run
            log.info("cron=off: pg_cron left alone, and its run history with it")
            return
        app_db = _offline_database() if op.get_context().as_sql else _current_database(op.get_bind())
        log.info("cron=off: pg_cron left alone; run %r from your own scheduler", _command_text(command, app_db))
        return
    if op.get_context().as_sql:
        _print_offline_instructions(op, scheduling=True, command=command, name=name, schedule=schedule,
                                    in_cron_database=in_cron_database)
        return

    bind = op.get_bind()
    sql = _command_text(command, _current_database(bind))
    try:
        app_db, cron_db = _databases(bind)
    except (sa.exc.DBAPIError, SettingsHidden) as error:
        unavailable(mode, f"could not tell whether pg_cron is preloaded ({error.orig}); the role that runs the "
                          "upgrade needs pg_read_all_settings (see docs/operations.md, 'The pg_cron job')", sql)
        return
    if cron_db is None:
        unavailable(mode, "pg_cron is not in shared_preload_libraries on this server", sql)
        return
    run_in = cron_db if in_cron_database else app_db

    try:
        with _cron_transaction(bind, cron_db) as cron:
            extversion = _pg_cron_version(cron)
            if extversion is None:
                cron.exec_driver_sql("CREATE EXTENSION pg_cron")
                extversion = _pg_cron_version(cron)
                log.info("created extension pg_cron %s in database %s", extversion, cron_db)
            schedule = (schedule or option("cron_schedule", "PROXY_LEASES_CRON_SCHEDULE")
                        or default_schedule(extversion))
            # pg_cron 1.4 re-schedules an existing name without moving it to another database,
            # so the old job goes first.
            _unschedule(cron, name(app_db))
            jobid = cron.execute(
                sa.text("SELECT cron.schedule_in_database(:name, :schedule, :command, :db)"),
                {"name": name(app_db), "schedule": schedule, "command": sql, "db": run_in},
            ).scalar()
    except sa.exc.DBAPIError as error:
        _raise_if_lock_timeout(error, cron_db)
        unavailable(mode, f"pg_cron in database {cron_db} could not be used: {error.orig}".rstrip(), sql)
        return
    # Reported once, at the end, as the job is then: a job replaced later in the same run is not news.
    log.debug("pg_cron job %d %r in database %s runs %r in database %s on schedule %r",
              jobid, name(app_db), cron_db, sql, run_in, schedule)


def unschedule_sweeper(op) -> None:
    unschedule_job(op, name=job_name)


def unschedule_job(op, name=job_name) -> None:
    """Remove this database's job `name(database)`, if there is one."""
    if cron_mode() == "off":
        return
    if op.get_context().as_sql:
        _print_offline_instructions(op, scheduling=False, name=name)
        return
    bind = op.get_bind()
    try:
        app_db, cron_db = _databases(bind)
    except (sa.exc.DBAPIError, SettingsHidden) as error:
        log.warning("could not tell where pg_cron lives (%s): remove job %r by hand", error.orig,
                    name(_current_database(bind)))
        return
    if cron_db is None:
        return
    try:
        with _cron_transaction(bind, cron_db) as cron:
            if cron.exec_driver_sql("SELECT to_regclass('cron.job')").scalar() is None:
                return
            removed = _unschedule(cron, name(app_db))
    except sa.exc.DBAPIError as error:
        _raise_if_lock_timeout(error, cron_db)
        log.warning(
            "could not remove pg_cron job %r from database %s (%s). Remove it there by hand: "
            "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '%s'",
            name(app_db), cron_db, error.orig, name(app_db),
        )
        return
    log.debug("removed %d pg_cron job(s) %r from database %s", removed, name(app_db), cron_db)


def schedule_statements(app_db: str, command=SWEEP_COMMAND, *, name=job_name, schedule: str | None = None,
                        in_cron_database: bool = False) -> list[str]:
    """The statements that (re)create job `name(app_db)`, to be run in pg_cron's database by the role
    that owns the fleet's tables. Without `schedule`, the -x cron_schedule option or every minute,
    which works on every pg_cron."""
    job = _literal(name(app_db))
    sql = _literal(_command_text(command, app_db))
    when = _literal(schedule or option("cron_schedule", "PROXY_LEASES_CRON_SCHEDULE") or "* * * * *")
    schedule_call = (f"SELECT cron.schedule({job}, {when}, {sql});" if in_cron_database
                     else f"SELECT cron.schedule_in_database({job}, {when}, {sql}, {_literal(app_db)});")
    return [f"SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = {job};", schedule_call]


def final_job_statements(app_db: str, schedule: str | None = None) -> list[str]:
    """What the head revision schedules: the maintenance job and the history pruning, replacing any
    earlier version of either."""
    return [
        *schedule_statements(app_db, MAINTENANCE_COMMAND, schedule=schedule),
        *schedule_statements(app_db, lambda db: history_command(db, history_retention()),
                             name=history_job_name, schedule=HISTORY_SCHEDULE, in_cron_database=True),
    ]


GRANTS_FOR_A_ROLE = (
    "GRANT USAGE ON SCHEMA cron TO {role};",
    "GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) TO {role};",
)


def final_state(url, app_db: str | None = None):
    """The jobs pg_cron holds for this database now, or why there are none and what fixes that.

    Read at the end of a run over connections of its own, as the role that ran it: pg_cron shows each
    role only its own jobs, which are the ones the run scheduled.
    """
    from proxy_leases.migrations.run_summary import CronState  # run_summary imports nothing of ours

    engine = sa.create_engine(url, poolclass=pool.NullPool,
                              connect_args=context.config.attributes.get("connect_args", {}))
    try:
        with engine.connect() as bind:
            app_db = app_db or _current_database(bind)
            role = bind.exec_driver_sql("SELECT current_user").scalar()
            try:
                _, cron_db = _databases(bind)
            except (sa.exc.DBAPIError, SettingsHidden) as error:
                where = "the database named by cron.database_name (usually postgres)"
                return CronState(
                    reason=f"could not tell whether pg_cron is preloaded: {_first_line(error)}; role {role} "
                           "needs pg_read_all_settings to find where pg_cron lives",
                    fix=[f"as a superuser, in {where}:", f"GRANT pg_read_all_settings TO {role};", *(grant.format(role=role) for grant in GRANTS_FOR_A_ROLE),
                         f"then there, as {role} (or run `proxy-leases sql --cron` there):",
                         *final_job_statements(app_db)])
    finally:
        engine.dispose()
    if cron_db is None:
        return CronState(
            reason="pg_cron is not in shared_preload_libraries on this server",
            fix=["add pg_cron to shared_preload_libraries (and cron.database_name) in postgresql.conf and restart, "
                 "then in that database, as the role that owns the fleet's tables:", *final_job_statements(app_db)])
    engine = _cron_engine_for(url, cron_db)
    try:
        with engine.connect() as cron:
            jobs = cron.execute(sa.text(
                "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job"
                " WHERE jobname IN (:sweep, :prune) ORDER BY jobname DESC"),
                {"sweep": job_name(app_db), "prune": history_job_name(app_db)}).mappings().all()
    except sa.exc.DBAPIError as error:
        return CronState(
            reason=f"pg_cron in database {cron_db} could not be read as {role}: {_first_line(error)}",
            fix=[f"as a superuser, in database {cron_db} (CREATE EXTENSION pg_cron there if it is missing):",
                 *(grant.format(role=role) for grant in GRANTS_FOR_A_ROLE),
                 f"then there, as {role}:", *final_job_statements(app_db)])
    finally:
        engine.dispose()
    state = CronState(jobs=[dict(job) for job in jobs])
    if not any(job["jobname"] == job_name(app_db) for job in state.jobs):
        state.reason = (f"no job {job_name(app_db)} in cron.job of database {cron_db} that role {role} can see "
                        "(a run with cron=off, a job removed by hand, or one scheduled by another role)")
        state.fix = [f"in database {cron_db}, as {role}:", *final_job_statements(app_db)]
    return state


def _cron_engine_for(url, cron_db: str) -> sa.Engine:
    return sa.create_engine(sa.engine.make_url(url).set(database=cron_db), poolclass=pool.NullPool,
                            connect_args=context.config.attributes.get("connect_args", {}))


def _first_line(error: sa.exc.DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0]


def _print_offline_instructions(op, *, scheduling: bool, command=SWEEP_COMMAND, name=job_name,
                                schedule: str | None = None, in_cron_database: bool = False) -> None:
    """--sql cannot reach a second database: say exactly what to run there instead."""
    context.config.attributes.setdefault("offline_cron_steps", []).append(scheduling)  # for the script's summary
    app_db = _offline_database()
    if scheduling:
        lines = [
            "pg_cron: this step needs the database named by cron.database_name (usually postgres).",
            "Run there, as the user that owns the fleet's tables:",
            f"  SET lock_timeout = {_literal(_lock_timeout())};",
            *("  " + statement for statement in schedule_statements(
                app_db, command, name=name, schedule=schedule, in_cron_database=in_cron_database)),
        ]
    else:
        lines = [
            "pg_cron: in the database named by cron.database_name, run:",
            f"  SET lock_timeout = {_literal(_lock_timeout())};",
            f"  SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = {_literal(name(app_db))};",
        ]
    # A colon followed by a word would be read as a bind parameter.
    op.execute(sa.text("\n".join("-- " + line for line in lines).replace(":", "\\:")))
