"""`proxy-leases check` and `proxy-leases status`: what an operator (or a probe) asks the database.

Both read only what a monitoring role may read (proxy_leases_health, proxy_pool_status,
proxy_pool_by_container: GRANT pg_monitor or proxy_leases_operator to it), never pg_cron's database.

check   prints every row of proxy_leases_health; exit 0 when all pass, 1 when one fails (with what to
        do), 2 when it cannot tell: no database given, none reachable within 10 s, no proxy-leases
        there or not at this package's head revision, or a refusal (a role without the monitoring
        grants). status and plot exit 0 or 2 the same way.
status  prints the pool as the incident report's statistics block did: total, in use, blocked,
        free, stuck, then the containers holding proxies.
plot    draws the pool over the last hours from the audit trail into a PNG (proxy_leases/plot.py);
        it reads the trail, so it needs proxy_leases_operator.
"""

from __future__ import annotations

import importlib.util
import sys

import psycopg

from proxy_leases import __version__, connection
from proxy_leases.migrations.version_table import LEGACY_TABLE, VERSION_TABLE

OK, FAILED, NOT_AT_HEAD = 0, 1, 2


class NotAtHead(Exception):
    """The database is not at this package's head: no proxy-leases, an older or a newer revision."""


def installed_revision(conn: psycopg.Connection) -> str | None:
    """The revision proxy-leases recorded, or None when it was never installed here.

    From 0021_maintenance_health a function reads it for any role allowed to check; before that only
    the version table's owner could, and the table tells at least that some proxy-leases is there.
    """
    has_function, table = conn.execute(
        "SELECT to_regprocedure('public.proxy_leases_installed_revision()') IS NOT NULL, "
        "       coalesce(to_regclass(%s), to_regclass(%s))::text", (VERSION_TABLE, LEGACY_TABLE)).fetchone()
    if has_function:
        return conn.execute("SELECT public.proxy_leases_installed_revision()").fetchone()[0]
    if table is None:
        return None
    try:
        return conn.execute(f"SELECT min(version_num) FROM {table}").fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        return "an older revision (its version table is not readable by this role)"


def require_head(conn: psycopg.Connection, head: str) -> None:
    revision = installed_revision(conn)
    database = conn.info.dbname
    if revision is None:
        raise NotAtHead(f"proxy-leases is not installed in database {database}: run `proxy-leases upgrade` "
                        "(docs/install.md)")
    if revision != head:
        raise NotAtHead(f"database {database} is at {revision}, not at {head}, the head of this proxy-leases "
                        f"{__version__}: run `proxy-leases upgrade` with it (or check with the proxy-leases "
                        "that installed the database)")


def check(conn: psycopg.Connection, head: str, out=sys.stdout) -> int:
    require_head(conn, head)
    rows = conn.execute("SELECT name, ok, value, threshold, action FROM public.proxy_leases_health").fetchall()
    width = max(len(name) for name, *_ in rows)
    for name, ok, value, threshold, action in rows:
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<{width}}  {value} ({threshold})", file=out)
        if not ok:
            print(f"      {'':<{width}}  → {action}", file=out)
    failed = [name for name, ok, *_ in rows if not ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks pass" + (f"; failing: {', '.join(failed)}" if failed else ""),
          file=out)
    return FAILED if failed else OK


def status(conn: psycopg.Connection, head: str, out=sys.stdout) -> int:
    require_head(conn, head)
    total, in_use, blocked, free, stuck = conn.execute(
        "SELECT total, in_use, blocked, free, stuck FROM public.proxy_pool_status").fetchone()
    containers = conn.execute(
        "SELECT coalesce(container_id, '(no worker)'), workers, proxies_held, proxies_stuck, tasks_processing "
        "  FROM public.proxy_pool_by_container ORDER BY proxies_held DESC, container_id").fetchall()
    holding = [c for c in containers if c[2] > 0]
    print(f"Total proxies:  {total:>6}", file=out)
    print(f"In use:         {in_use:>6}  ({len(holding)} container{'' if len(holding) == 1 else 's'} holding proxies)",
          file=out)
    print(f"Blocked:        {blocked:>6}", file=out)
    print(f"Free:           {free:>6}", file=out)
    print(f"Stuck:          {stuck:>6}  (held, and freed by the next sweep)", file=out)
    if containers:
        print("\nContainers:", file=out)
        for container_id, workers, held, stuck_here, tasks in containers:
            print(f"  - {container_id}: {held} proxies held ({stuck_here} stuck), {tasks} tasks processing, "
                  f"{workers} workers", file=out)
    return OK


def plot(conn: psycopg.Connection, head: str, output: str, hours: float) -> int:
    require_head(conn, head)
    if importlib.util.find_spec("matplotlib") is None:
        print("proxy-leases: plot needs matplotlib: pip install 'proxy-leases[plot]'", file=sys.stderr)
        return NOT_AT_HEAD
    from proxy_leases import plot as drawing
    return drawing.run(conn, output, hours)


def run(verb: str, url: str | None, head: str, output: str = "", hours: float = 0) -> int:
    try:
        # A probe must answer: 10 s to connect, then exit 2. (No startup options: PgBouncer refuses them.)
        conn = connection.connect(connection.psycopg_url(url), f"proxy-leases {verb}", connect_timeout=10)
    except SystemExit as unreachable:
        print(unreachable, file=sys.stderr)
        return NOT_AT_HEAD
    with conn:
        try:
            if verb == "plot":
                return plot(conn, head, output, hours)
            return {"check": check, "status": status}[verb](conn, head)
        except NotAtHead as error:
            print(f"proxy-leases: {error}", file=sys.stderr)
            return NOT_AT_HEAD
        except psycopg.Error as error:
            print(f"proxy-leases: the database refused (SQLSTATE {error.sqlstate}): "
                  f"{error.diag.message_primary or str(error).strip()}", file=sys.stderr)
            if isinstance(error, psycopg.errors.InsufficientPrivilege):
                print("HINT: a role that checks needs the monitoring grants: GRANT pg_monitor TO <role> "
                      "(or proxy_leases_operator)", file=sys.stderr)
            return NOT_AT_HEAD
