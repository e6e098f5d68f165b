"""The `proxy-leases` command: Alembic's upgrade, downgrade, current, history and --sql, for this package.

    proxy-leases upgrade [REV]      (default head)
    proxy-leases downgrade REV      (base removes everything)
    proxy-leases current | history
    proxy-leases stamp REV          record REV without running anything
    proxy-leases sql [REV | FROM:TO] the upgrade as a psql script, for a change review
    proxy-leases sql --downgrade FROM:TO

The database comes from --url or DATABASE_URL. --cron, --cron-schedule, --lock-timeout and
--deploy-wait are the -x options of `alembic` (README, "Options"). Expected failures, the database's
refusals included, print what happened and what to do (with the SQLSTATE, DETAIL and HINT) and
exit 1; none prints a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import exc

from proxy_leases import __version__
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


def parser() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the command's own parser.
    shared.add_argument("--url", default=argparse.SUPPRESS,
                        help="postgresql://user@host:port/dbname (default: $DATABASE_URL)")
    shared.add_argument("--cron", choices=("auto", "require", "off"), default=argparse.SUPPRESS,
                        help="schedule the sweeper with pg_cron: auto (warn if missing, the default), require, off")
    shared.add_argument("--cron-schedule", default=argparse.SUPPRESS,
                        help="pg_cron schedule (default: every minute on pg_cron < 1.5, else 10 seconds)")
    shared.add_argument("--cron-history-retention", default=argparse.SUPPRESS,
                        help="how long pg_cron keeps the job's run history (default: 7 days)")
    shared.add_argument("--lock-timeout", default=argparse.SUPPRESS,
                        help="how long a step may wait for a lock on the fleet's tables (default: 5s)")
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
    sql = verbs.add_parser("sql", parents=[shared],
                           help="print the upgrade (or --downgrade) as a psql script instead of running it")
    sql.add_argument("revision", nargs="?", default="head", help="REV or FROM:TO (default: head)")
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
    elif options.verb == "sql" and options.downgrade:
        if ":" not in options.revision:
            raise CommandError("a downgrade script needs FROM:TO, e.g. head:base")
        command.downgrade(config, options.revision, sql=True)
    elif options.verb == "sql":
        command.upgrade(config, options.revision, sql=True)


def refusal(error: psycopg.Error) -> str:
    """The database's own words: SQLSTATE, message, DETAIL and HINT, as psql would show them."""
    diag = error.diag
    lines = [f"proxy-leases: the database refused (SQLSTATE {error.sqlstate}): "
             f"{diag.message_primary or str(error).strip()}"]
    lines += [f"{label}: {text}" for label, text in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint))
              if text]
    lines.append("The step that failed was rolled back and those before it stay (README, \"What every revision "
                 "is held to\"); `proxy-leases current` shows where the database is now.")
    return "\n".join(lines)


# Alembic's INFO lines that say nothing to an operator.
QUIET = ("Context impl ", "Will assume ")


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
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
