"""What the tests, the benchmarks, the soak and the demo share: a throwaway server, databases migrated by
Alembic as a user migrates them, and the incident's pool.

One module, so that there is one way to do each of these:

- the server is tools.throwaway_postgres's (re-exported here: ThrowawayPostgres, CRON_DATABASE, ...);
- `alembic(url, verb, ...)` runs Alembic in this process, `alembic_cli(...)` and `proxy_leases_cli(...)`
  run the two commands in a process of their own, as an operator types them;
- `migrated_database(server, name)` makes a database on a server and upgrades it;
- the revisions are Alembic's own list (`revisions()`, `HEAD`), never typed out;
- `load_legacy_incident` gives a database the fleet's pre-upgrade schema holding the report's pool.

Nothing in proxy_leases/ imports it: it is for working on proxy-leases, not for running it.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql

from tools.throwaway_postgres import (CRON_DATABASE, SUPERUSER, ThrowawayPostgres, find_bindir, has_extension,
                                      has_library, server_version)

__all__ = [
    "ALEMBIC_INI", "CRON_DATABASE", "DEMO_DIR", "HEAD", "POOL_FIGURES", "REVISION_COUNT", "ROOT", "SUPERUSER",
    "Database", "ThrowawayPostgres", "alembic", "alembic_cli", "alembic_config", "drop_database", "find_bindir", "has_extension",
    "has_library", "load_legacy_incident", "migrated_database", "pool_figures", "proxy_leases_cli", "revisions",
    "server_version",
]

ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = ROOT / "alembic.ini"
DEMO_DIR = ROOT / "demo"


def alembic_config(*x_args: str) -> Config:
    """The repository's alembic.ini, with `-x` options, its logging left to the caller."""
    config = Config(str(ALEMBIC_INI), cmd_opts=argparse.Namespace(x=list(x_args)))
    config.attributes["configure_logger"] = False
    return config


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every revision, oldest first, as Alembic's script directory orders them."""
    script = ScriptDirectory.from_config(alembic_config())
    return tuple(reversed([revision.revision for revision in script.walk_revisions("base", "heads")]))


# The newest revision: what `alembic upgrade head` ends at.
HEAD = revisions()[-1]
# How many revisions `upgrade head` runs on an empty database.
REVISION_COUNT = len(revisions())


def alembic(url: str, verb: str, *args: str, cron: str = "off", **x: str) -> None:
    """`alembic -x url=... -x cron=... <verb> <args>`, in this process."""
    config = alembic_config(f"url={url}", f"cron={cron}", *(f"{k}={v}" for k, v in x.items()))
    getattr(command, verb)(config, *args)


def _clean_environment(env: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment without proxy-leases' own variables (they would change the run's options),
    then `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_LEASES_") and k != "DATABASE_URL"}
    clean.update(env or {})
    return clean


def alembic_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The alembic command line, from the repository root, exactly as the docs say to run it."""
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=_clean_environment(env),
                          capture_output=True, text=True, timeout=timeout)


def proxy_leases_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The `proxy-leases` command as the package installs it (proxy_leases.cli:main), in a process of its own."""
    full_env = _clean_environment({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-c", "import sys; from proxy_leases.cli import main; sys.exit(main())", *args],
        cwd="/", env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@dataclass
class Database:
    """One database, by URL: short autocommit connections for the statements a test or a script runs."""

    url: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url, **kwargs)

    def one(self, query: str, params: Any = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row is not None and len(row) == 1 else row

    def all(self, query: str, params: Any = None) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()

    def run(self, query: str, params: Any = None) -> int:
        with self.connect() as conn:
            return conn.execute(query, params).rowcount

    def upgrade(self, target: str = "head", **x: str) -> None:
        alembic(self.url, "upgrade", target, **x)

    def downgrade(self, target: str, **x: str) -> None:
        alembic(self.url, "downgrade", target, **x)


def drop_database(server: ThrowawayPostgres, name: str) -> None:
    """Drop database `name` if it is there, with its pg_cron jobs, which would otherwise go on running."""
    with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0]:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %s", (name,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrated_database(server: ThrowawayPostgres, name: str, revision: str = "head", cron: str = "off") -> Database:
    """A new database `name` on `server` (an old one of that name, and its pg_cron jobs, dropped first),
    upgraded to `revision` by Alembic in this process."""
    drop_database(server, name)
    with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(server.url(name))
    alembic(database.url, "upgrade", revision, cron=cron)
    return database


POOL_FIGURES = """
SELECT count(*)                                             AS total,
       count(*) FILTER (WHERE is_in_use)                    AS in_use,
       count(*) FILTER (WHERE is_blocked)                   AS blocked,
       count(*) FILTER (WHERE NOT is_in_use AND NOT is_blocked) AS free
  FROM proxies
"""


def load_legacy_incident(database: Database) -> None:
    """The fleet's pre-upgrade schema holding the incident report's pool (see demo/)."""
    with database.connect() as conn:
        conn.execute((DEMO_DIR / "legacy_schema.sql").read_text(encoding="utf-8"))
        conn.execute((DEMO_DIR / "incident_state.sql").read_text(encoding="utf-8"))


def pool_figures(database: Database) -> tuple[int, int, int, int]:
    """(total, in use, blocked, free), as the incident report counts them."""
    return tuple(database.one(POOL_FIGURES))
