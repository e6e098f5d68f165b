"""The `proxy-leases` command: Alembic's upgrade, downgrade, current, history and --sql, for this package.

    proxy-leases upgrade [REV]      (default head)
    proxy-leases downgrade REV      (base removes everything)
    proxy-leases current | history
    proxy-leases stamp REV          record REV without running anything
    proxy-leases sql                the fresh-install script: head, each object once (docs/offline-install.md)
    proxy-leases sql --cron         the pg_cron script that goes with it, for pg_cron's database
    proxy-leases sql FROM:TO        Alembic's replay of the revisions after FROM, for an installed database
    proxy-leases sql --replay [REV] the replay from base (to head, or REV)
    proxy-leases sql --downgrade FROM:TO
    proxy-leases check              the health checks (proxy_leases_health); exit 1 if one fails, 2 if it cannot tell
    proxy-leases status             the pool: total, in use, blocked, free, stuck, and by container
    proxy-leases plot [--hours H]   the pool over the last H hours, from the audit trail, into proxy-pool.png

The database comes from --url or DATABASE_URL. --cron, --cron-schedule, --lock-timeout and
--deploy-wait are the -x options of `alembic` (docs/install.md, "Options"). Expected failures, the database's
refusals included, print what happened and what to do (with the SQLSTATE, DETAIL and HINT) and
exit 1; none prints a traceback. upgrade, downgrade and stamp end with a summary of what they did
(migrations/run_summary.py) and exit 3 when every revision was applied but nothing will run the
maintenance, unless --cron auto or --cron off was given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import exc

from proxy_leases import __version__, health
from proxy_leases.migrations.options import DEFAULT_LOCK_TIMEOUT
from proxy_leases.migrations.pg_cron import PgCronUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# option name -> the -x key the migrations read (proxy_leases/migrations/env.py, pg_cron.py)
X_OPTIONS = {"url": "url", "cron": "cron", "cron_schedule": "cron_schedule",
             "cron_history_retention": "cron_history_retention",
             "lock_timeout": "lock_timeout", "deploy_wait": "deploy_wait"}


def alembic_config(options: argparse.Namespace) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.cmd_opts = argparse.Namespace(x=[f"{key}={value}" for name, key in X_OPTIONS.items()
                                            if (value := getattr(options, name, None))])
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def positive_hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = float("nan")
    if not 0 < hours < 24 * 366:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of hours above 0 and below a year, such as 6 or 0.5")
    return hours


def parser() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's own parser.
    shared.add_argument("--url", default=argparse.SUPPRESS,
                        help="postgresql://user@host:port/dbname (default: $DATABASE_URL)")
    shared.add_argument("--cron", choices=("auto", "require", "off"), default=argparse.SUPPRESS,
                        help="the pg_cron job: not given, schedule it and exit 3 where nothing will run the "
                             "maintenance; auto, the same but exit 0; require, stop where it cannot be scheduled; "
                             "off, leave pg_cron alone")
    shared.add_argument("--cron-schedule", default=argparse.SUPPRESS,
                        help="pg_cron schedule (default: every minute on pg_cron < 1.5, else 10 seconds)")
    shared.add_argument("--cron-history-retention", default=argparse.SUPPRESS,
                        help="how long pg_cron keeps the job's run history (default: 7 days)")
    shared.add_argument("--lock-timeout", default=argparse.SUPPRESS,
                        help=f"how long a step may wait for a lock on the fleet's tables (default: {DEFAULT_LOCK_TIMEOUT})")
    shared.add_argument("--deploy-wait", default=argparse.SUPPRESS,
                        help="how long to wait for another deploy of this database to end (default: 10min)")

    top = argparse.ArgumentParser(prog="proxy-leases", parents=[shared],
                                  description="Install and upgrade proxy-leases in a PostgreSQL database.")
    top.add_argument("--version", action="version",
                     version=f"proxy-leases {__version__} (head revision {head_revision()})")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    upgrade = verbs.add_parser("upgrade", parents=[shared], help="upgrade to REV (default: head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = verbs.add_parser("downgrade", parents=[shared], help="downgrade to REV (base: remove it all)")
    downgrade.add_argument("revision")
    verbs.add_parser("current", parents=[shared], help="the revision the database is at")
    verbs.add_parser("history", parents=[shared], help="every revision, newest first")
    stamp = verbs.add_parser("stamp", parents=[shared], help="record REV as the database's revision, running nothing")
    stamp.add_argument("revision")
    # `sql --cron` alone asks for the pg_cron script; `sql --cron off` is the option every command has.
    sql_shared = argparse.ArgumentParser(add_help=False)
    for action in shared._actions:
        if "--cron" not in action.option_strings:
            sql_shared._add_action(action)
    verbs.add_parser("check", parents=[shared],
                     help="the health checks: exit 0 all pass, 1 one fails, 2 no proxy-leases at this head here")
    verbs.add_parser("status", parents=[shared], help="the pool: total, in use, blocked, free, stuck; by container")
    plot = verbs.add_parser("plot", parents=[shared],
                            help="the pool over the last hours, from the audit trail, into a PNG (needs matplotlib)")
    plot.add_argument("--hours", type=positive_hours, default=6.0, help="how far back (default: 6)")
    plot.add_argument("--output", "-o", default="proxy-pool.png", help="the PNG to write (default: proxy-pool.png)")
    sql = verbs.add_parser("sql", parents=[sql_shared],
                           help="print the install, an upgrade, a downgrade or the pg_cron jobs as a psql script")
    sql.add_argument("revision", nargs="?", default=None,
                     help="FROM:TO (or REV, from base): Alembic's replay of those revisions. Default, head or "
                          "base:head: the fresh-install script, for a database proxy-leases was never installed in")
    sql.add_argument("--cron", nargs="?", const=CRON_SCRIPT, default=argparse.SUPPRESS, metavar="MODE",
                     help="alone: the pg_cron script (the head's jobs, to run in pg_cron's database); "
                          "auto, require or off: as for upgrade")
    sql.add_argument("--replay", action="store_true",
                     help="Alembic's replay of every revision from base (to head, or REV) instead of the fresh install")
    sql.add_argument("--downgrade", action="store_true", help="the downgrade FROM:TO, e.g. head:base")
    return top


def run(options: argparse.Namespace) -> None:
    config = alembic_config(options)
    if options.verb == "upgrade":
        command.upgrade(config, options.revision)
    elif options.verb == "downgrade":
        command.downgrade(config, options.revision)
    elif options.verb == "current":
        command.current(config, verbose=False)
    elif options.verb == "history":
        command.history(config, indicate_current=False)
    elif options.verb == "stamp":
        command.stamp(config, options.revision)
    elif options.verb == "sql":
        sql_script(options, config)


CRON_SCRIPT = "script"


def sql_script(options: argparse.Namespace, config: Config) -> None:
    """`proxy-leases sql`: the script goes to stdout, what it is to stderr; nothing is connected to."""
    cron = getattr(options, "cron", None)
    if cron not in (None, CRON_SCRIPT, "auto", "require", "off"):
        raise SystemExit(f"proxy-leases: --cron {cron!r}: expected auto, require or off, or --cron alone for the "
                         "pg_cron script")
    revision = options.revision
    if options.downgrade:
        if cron == CRON_SCRIPT or options.replay or revision is None or ":" not in revision:
            raise CommandError("a downgrade script needs FROM:TO, e.g. head:base (and neither --cron nor --replay)")
        command.downgrade(config, revision, sql=True)
        return
    head = head_revision()
    if cron == CRON_SCRIPT:
        if options.replay or revision not in (None, "head", head):
            raise CommandError("the pg_cron script holds the head's jobs: give it no revision")
        config.cmd_opts.x = [x for x in config.cmd_opts.x if not x.startswith("cron=")]
        sys.stdout.write(with_options(config, pg_cron_script))
        return
    if options.replay or revision not in (None, "head", head, "base:head", f"base:{head}"):
        command.upgrade(config, revision or "head", sql=True)
        return
    sys.stdout.write(with_options(config, fresh_script))


def with_options(config: Config, make) -> str:
    """make() under Alembic's environment, where pg_cron.option() reads the -x options as an upgrade does."""
    from alembic.runtime.environment import EnvironmentContext

    from proxy_leases.migrations.fresh_install import PlanError

    with EnvironmentContext(config, ScriptDirectory.from_config(config)):
        try:
            return make()
        except PlanError as error:
            raise SystemExit(f"proxy-leases: no fresh-install script: {error}. `proxy-leases sql --replay` prints "
                             "the replay of every revision instead.") from None


def fresh_script() -> str:
    from proxy_leases.migrations import deploy_lock, fresh_install, options, pg_cron

    lock_timeout = options.lock_timeout()
    deploy_wait = options.duration_option("deploy_wait", "PROXY_LEASES_DEPLOY_WAIT", deploy_lock.DEFAULT_WAIT)
    plan = fresh_install.build_plan()
    script = fresh_install.fresh_install_script(plan, lock_timeout=lock_timeout, deploy_wait=deploy_wait,
                                                cron_mode=pg_cron.cron_mode())
    print(f"proxy-leases: the fresh install at {plan.head} ({script.count(chr(10))} lines), for a database "
          "proxy-leases was never installed in; where it is, `proxy-leases sql <its revision>:head` prints the "
          "upgrade. It schedules nothing: `proxy-leases sql --cron` prints the pg_cron script.", file=sys.stderr)
    return script


def pg_cron_script() -> str:
    from sqlalchemy.engine import make_url

    from proxy_leases.migrations import fresh_install, options, pg_cron

    url = pg_cron.option("url", "DATABASE_URL")
    if not url:
        raise SystemExit("proxy-leases: the pg_cron jobs are named after the fleet's database: give its URL with "
                         "--url or DATABASE_URL=postgresql://user@host:port/dbname (nothing is connected to).")
    try:
        database = make_url(url).database
    except (exc.ArgumentError, ValueError):
        raise SystemExit("proxy-leases: the database URL is not a URL: expected "
                         "postgresql://user[:password]@host[:port]/dbname") from None
    if not database:
        raise SystemExit(f"proxy-leases: {url!r} names no database: the pg_cron jobs are named after it and run in it")
    script = fresh_install.cron_script(database, lock_timeout=options.lock_timeout(), head=head_revision())
    print(f"proxy-leases: the pg_cron jobs of database {database}: run this script in pg_cron's database "
          "(cron.database_name, usually postgres) as the role that owns the fleet's tables.", file=sys.stderr)
    return script


def refusal(error: psycopg.Error) -> str:
    """The database's own words: SQLSTATE, message, DETAIL and HINT, as psql would show them."""
    diag = error.diag
    lines = [f"proxy-leases: the database refused (SQLSTATE {error.sqlstate}): "
             f"{diag.message_primary or str(error).strip()}"]
    lines += [f"{label}: {text}" for label, text in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint))
              if text]
    lines.append("The step that failed was rolled back and those before it stay "
                 "(docs/install.md, \"What every revision is held to\"); `proxy-leases current` shows where the "
                 "database is now.")
    return "\n".join(lines)


# Alembic's INFO lines that say nothing to an operator.
QUIET = ("Context impl ", "Will assume ")


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    if options.verb in ("check", "status", "plot"):
        return health.run(options.verb, getattr(options, "url", None) or os.environ.get("DATABASE_URL"),
                          head_revision(), getattr(options, "output", ""), getattr(options, "hours", 0))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: not record.getMessage().startswith(QUIET))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.INFO)
    try:
        run(options)
    except CommandError as error:
        known = f"this proxy-leases {__version__} knows revisions up to {head_revision()}"
        print(f"proxy-leases: {error} ({known}; `proxy-leases history` lists them)", file=sys.stderr)
        return 1
    except exc.DBAPIError as error:
        if not isinstance(error.orig, psycopg.Error):
            raise
        print(refusal(error.orig), file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(refusal(error), file=sys.stderr)
        return 1
    except PgCronUnavailable as error:
        print(f"proxy-leases: {error}. `proxy-leases current` shows where the database is now.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
