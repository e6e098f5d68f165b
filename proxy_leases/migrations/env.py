"""Alembic environment for proxy-leases: one transaction per revision, psycopg 3 underneath.

The revision is recorded in proxy_leases_alembic_version, beside whatever the fleet keeps in its
own alembic_version (version_table.py), and every run that changes the database holds the deploy
lock from start to end (deploy_lock.py).
"""

import contextlib
import logging
import os

import psycopg
from alembic import context
from sqlalchemy import create_engine, exc, pool
from sqlalchemy.engine import make_url

from proxy_leases import __version__, connection
from proxy_leases.migrations import deploy_lock, options, pg_cron, run_summary
from proxy_leases.migrations.version_table import (LEGACY_TABLE, OLD_LAYOUT_QUERY, VERSION_TABLE, legacy_record_query,
                                                    move_legacy_record_sql, starting_revision_guard_sql)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return connection.psycopg_url(context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL"))


def lock_timeout() -> str:
    """How long a revision may wait for a lock on the fleet's tables before it gives up cleanly.

    Every statement that waits for a lock makes the fleet's statements queue behind it: a revision
    stuck behind a long transaction must fail fast rather than stop every worker.
    """
    return options.lock_timeout()


LOCK_TIMEOUT_HELP = """proxy-leases: a revision could not take its locks within lock_timeout={timeout} \
(SQLSTATE {sqlstates}): a transaction that has been open for a while holds proxies, \
proxy_lease_settings, catalog_tasks or object_tasks (or, for a pg_cron step, cron.job in pg_cron's \
database). Most revisions run in one transaction and changed nothing; one that commits in parts \
(a backfill's tokens, an index built CONCURRENTLY) keeps what it committed. Every step \
is safe to run again, and `proxy-leases current` (or `alembic current`) shows where the database is.
The database said: {error}
Find the transaction{where}:
  SELECT pid, xact_start, state, left(query, 80) FROM pg_stat_activity
   WHERE xact_start < now() - interval '{timeout}' ORDER BY xact_start;
then run the same command again when it has ended, or give it longer with --lock-timeout 30s
(alembic: -x lock_timeout=30s).""".replace("{sqlstates}", " or ".join(options.LOCK_SQLSTATES))


def connect_args() -> dict:
    """For every connection a revision opens, pg_cron's included (migrations/pg_cron.py)."""
    return {"options": "-c lock_timeout=" + lock_timeout().replace(" ", "\\ ")}


def deploy_wait() -> str:
    """How long a deploy waits for another one to finish before it gives up, changing nothing."""
    return options.duration_option("deploy_wait", "PROXY_LEASES_DEPLOY_WAIT", deploy_lock.DEFAULT_WAIT)


config.attributes["lock_timeout"] = lock_timeout()
config.attributes["connect_args"] = connect_args()
deploy_wait()  # a bad value stops here, before anything runs
log = logging.getLogger("alembic.proxy_leases")


def changes_the_database() -> bool:
    """upgrade, downgrade and stamp name a destination; current, history and check have none."""
    try:
        context.get_revision_argument()
    except KeyError:  # Alembic's command gave no destination_rev
        return False
    return True


def known_revisions() -> list[str]:
    return sorted(script.revision for script in context.script.walk_revisions())


def connect_directly(url: str) -> psycopg.Connection:
    """The run's first connection: a failure to connect is one clear line, not a traceback."""
    return connection.connect(url, deploy_lock.application_name())


def refuse_a_database_ahead(conn: psycopg.Connection, table: str) -> None:
    """A revision this package does not know was written by a newer proxy-leases: say so plainly."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", (table,)).fetchone()[0]:
        return
    known = set(known_revisions())
    for (recorded,) in conn.execute(f"SELECT version_num FROM {table}").fetchall():
        if recorded not in known:
            raise SystemExit(
                f"proxy-leases: the database is at revision {recorded!r}, which this proxy-leases "
                f"{__version__} (head {context.script.get_current_head()}) does not know: a newer "
                "proxy-leases installed it. Nothing was changed. Run the proxy-leases that installed it "
                "(a downgrade needs its revision files too).")


def version_table_to_read(conn: psycopg.Connection) -> str:
    """For current and history: an install that predates our own table is read where it is."""
    try:
        row = conn.execute(OLD_LAYOUT_QUERY).fetchone()[0] and conn.execute(
            legacy_record_query(known_revisions())).fetchone()
    except psycopg.errors.InsufficientPrivilege:  # the fleet's table, closed to this role: not ours
        row = None
    if not row:
        if conn.execute("SELECT to_regclass(%s) IS NULL", (VERSION_TABLE,)).fetchone()[0] or not conn.execute(
                f"SELECT EXISTS (SELECT FROM {VERSION_TABLE})").fetchone()[0]:
            log.info("proxy-leases is not installed in this database (this package's head is %s)",
                     context.script.get_current_head())
        return VERSION_TABLE
    log.info("proxy-leases is recorded in %s (revision %s); the next upgrade moves it to %s",
             LEGACY_TABLE, row[0], VERSION_TABLE)
    return LEGACY_TABLE


# This run's summary (run_summary.py), for runs that change the database; None for current and history.
summary: run_summary.RunSummary | None = None
_notices_passed_on: set[tuple[str, str]] = set()


def pass_on_notice(notice: psycopg.errors.Diagnostic) -> None:
    """A revision's NOTICE or WARNING reaches the operator, each once per run (psql would show it too),
    and the summary keeps it."""
    key = (notice.severity_nonlocalized or notice.severity or "NOTICE", notice.message_primary or "")
    if key in _notices_passed_on:
        return
    if key[0] == "NOTICE" and key[1].endswith(", skipping"):
        # DROP ... IF EXISTS / CREATE ... IF NOT EXISTS on an object already as wanted: not news.
        log.debug("%s: %s", *key)
        return
    _notices_passed_on.add(key)
    text = f"{key[0]}: {key[1]}" + (f" (HINT: {notice.message_hint})" if notice.message_hint else "")
    (log.warning if key[0] == "WARNING" else log.info)("%s", text)
    if summary is not None:
        summary.notice(key[0], key[1])


def start_summary(conn: psycopg.Connection, url: str) -> run_summary.RunSummary:
    database, role, superuser = conn.execute(
        "SELECT current_database(), current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    started = run_summary.RunSummary(
        database=database, role=role, superuser=superuser, before=run_summary.snapshot(conn, VERSION_TABLE),
        cron_mode=pg_cron.cron_mode(), cron_mode_given=pg_cron.option("cron", "PROXY_LEASES_CRON") is not None)
    if started.cron_mode != "off":   # to tell the jobs the run replaced or removed
        started.cron_before = pg_cron.final_state(url, database)
    return started


def finish_summary(conn: psycopg.Connection, url: str) -> None:
    """Printed last, once; exits with NO_SWEEPER_EXIT where nothing will run the maintenance."""
    summary.after = run_summary.snapshot(conn, VERSION_TABLE)
    summary.needs_sweeper = needs_sweeper(summary.after.revision)
    if summary.cron_mode != "off":
        summary.cron = pg_cron.final_state(url, summary.database)
    summary.report()
    if summary.exit_code():
        raise SystemExit(summary.exit_code())


def move_an_old_record(conn: psycopg.Connection) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout(),))
    conn.add_notice_handler(pass_on_notice)
    try:
        conn.execute(move_legacy_record_sql(known_revisions()))
    except psycopg.errors.LockNotAvailable as error:
        raise SystemExit(LOCK_TIMEOUT_HELP.format(timeout=lock_timeout(), error=" ".join(str(error).split()),
                                                  where=f" (on {LEGACY_TABLE})")) from None
    conn.execute("RESET lock_timeout")


def run_migrations_offline() -> None:
    config.attributes["offline_database"] = make_url(database_url()).database
    # paramstyle "named": otherwise every % in PL/pgSQL (RAISE '... %') comes out doubled.
    context.configure(
        url=database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        version_table=VERSION_TABLE,
    )
    start, end, downgrading = offline_range()
    # A failed step must stop the script: psql would go on with the next revisions, on top of the gap.
    context.get_context().impl.static_output("\\set ON_ERROR_STOP on")
    # The same deploy lock as online runs, waited for as long; psql holds it until the script ends.
    context.execute(deploy_lock.take_sql(deploy_wait()))
    context.execute(f"SET lock_timeout = '{lock_timeout()}'")
    context.execute(move_legacy_record_sql(known_revisions()))
    context.execute(starting_revision_guard_sql(
        start, f"proxy-leases sql --downgrade %s:{end or 'base'}" if downgrading else "proxy-leases sql %s:head"))
    with context.begin_transaction():
        context.run_migrations()
    context.execute(deploy_lock.RELEASE)
    context.get_context().impl.static_output("\n".join(offline_summary()))


def needs_sweeper(revision: str | None) -> bool:
    """At `revision`, something must run the maintenance every minute."""
    return revision is not None and run_summary.SWEEPER_REVISION in {
        script.revision for script in context.script.iterate_revisions(revision, "base")}


def offline_range() -> tuple[str | None, str | None, bool]:
    """(the revision the script starts from, the one it ends at, whether it goes down); None is base."""
    def resolve(argument: str | None) -> str | None:
        script = context.script.get_revision(argument) if argument not in (None, "base") else None
        return script.revision if script else None

    start = resolve(context.get_starting_revision_argument())
    end = resolve(context.get_revision_argument())
    below_start = set() if start is None else {
        script.revision for script in context.script.iterate_revisions(start, "base")} - {start}
    return start, end, start is not None and (end is None or end in below_start)


def offline_summary() -> list[str]:
    """The script's last lines, reached only when every step succeeded (ON_ERROR_STOP)."""
    start, end, _ = offline_range()
    lines = [f"-- proxy-leases summary: this script takes the database from {start or 'base'} to {end or 'base'}.",
             "-- Rows that backfills change are named, before they change, by NOTICEs that begin "
             f"'{run_summary.BACKFILL_MARK.strip()}'."]
    steps = config.attributes.get("offline_cron_steps", [])
    if pg_cron.cron_mode() == "off":
        lines.append("-- The maintenance: pg_cron left alone (cron=off); run CALL public.run_lease_maintenance() "
                     "every minute from your own scheduler.")
    elif any(steps) and needs_sweeper(end):
        lines += ["-- The maintenance: this script cannot reach pg_cron's database, and its pg_cron steps above are",
                  "-- comments. `proxy-leases sql --cron` prints the statements that schedule the jobs as the head",
                  "-- has them; run them there, as the role that owns the fleet's tables.",
                  "\\echo 'proxy-leases: NOT SCHEDULED by this script: its pg_cron steps were not run. Run the "
                  "statements of `proxy-leases sql --cron` in pg_cron''s database.'"]
    elif steps:
        lines += ["-- The maintenance: the pg_cron steps above are comments, not run by this script: run them in",
                  "-- pg_cron's database.",
                  "\\echo 'proxy-leases: the pg_cron steps of this script were not run: see its comments.'"]
    else:
        lines.append("-- The maintenance: this script changes no pg_cron job.")
    return lines


def run_migrations_online() -> None:
    """The deploy lock and the old record are handled on a first connection of their own."""
    global summary
    url = database_url()
    with contextlib.ExitStack() as run:
        first = run.enter_context(connect_directly(url))
        if changes_the_database():
            run.enter_context(deploy_lock.held(first, deploy_wait()))
            summary = start_summary(first, url)
            move_an_old_record(first)   # its NOTICE is in the summary; the revision it moved is where we start
            summary.before = run_summary.snapshot(first, VERSION_TABLE)
            table = VERSION_TABLE
        else:
            table = version_table_to_read(first)
        refuse_a_database_ahead(first, table)
        migrate(url, table)
        if summary is not None:
            finish_summary(first, url)


def migrate(url: str, table: str) -> None:
    # lock_timeout is set at connection start-up: nothing may run on this connection before
    # configure(), or SQLAlchemy 2 opens a transaction and Alembic silently drops transaction_per_migration.
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args())
    with engine.connect() as connection:
        connection.connection.driver_connection.add_notice_handler(pass_on_notice)
        context.configure(connection=connection, transaction_per_migration=True, version_table=table)
        try:
            with context.begin_transaction():
                context.run_migrations()
        except exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) in options.LOCK_SQLSTATES:
                where = getattr(error, "proxy_leases_database", None)
                raise SystemExit(LOCK_TIMEOUT_HELP.format(
                    timeout=lock_timeout(), error=str(error.orig).strip().replace("\n", " "),
                    where=f" (in database {where}, where pg_cron lives)" if where else "")) from error
            raise


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
