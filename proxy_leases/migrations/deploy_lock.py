"""One deploy at a time: every mutating run holds a session-level advisory lock from start to end.

Two deploys that race (two containers of the deploy job, a retry that overlaps the first try)
would otherwise both start the same revision, and one fails midway. The lock is taken on a
connection of its own before any revision starts and before any table is locked, and held until
the run ends, however it ends: closing the session releases it, and so does a killed process.
The later runs wait for it, up to deploy_wait, and then find the database where the first left
it, usually at head, which makes them do nothing. They wait by trying again and again, committing
in between, never by blocking in pg_advisory_lock: a blocked statement keeps its transaction open,
and the CREATE INDEX CONCURRENTLY of the deploy it waits for (0002, 0007, 0008) waits for every
transaction open when it started, so neither would ever move (PostgreSQL cannot see that cycle). The `--sql` script takes and releases the same
lock. Advisory locks belong to one database, so deploys to different databases never wait for
each other. Through PgBouncer in transaction mode a session lock means nothing: migrations must
connect directly (docs/pgbouncer.md).
"""

from __future__ import annotations

from proxy_leases.migrations.pg_cron import _literal  # one SQL-literal quoting for every generated statement

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator

import psycopg

log = logging.getLogger("alembic.proxy_leases")

# Two int4 keys: a class of its own, apart from acquire_proxy's per-worker locks.
LOCK_KEYS = "hashtext('proxy_leases.upgrade'), 0"
TRY_TAKE = f"SELECT pg_try_advisory_lock({LOCK_KEYS})"
RELEASE = f"SELECT pg_advisory_unlock({LOCK_KEYS})"
HOLDER = f"""
SELECT a.pid, coalesce(nullif(a.application_name, ''), '-'), coalesce(a.usename::text, '-'),
       coalesce(host(a.client_addr), 'local socket'), a.backend_start
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (l.classid, l.objid, l.objsubid) = (hashtext('proxy_leases.upgrade')::oid, 0, 2)"""
DEFAULT_WAIT = "10min"
POLL_SECONDS = 0.2



def take_sql(wait: str) -> str:
    """The statement that takes the lock, waiting up to `wait`, online and in the --sql script alike.

    On giving up it raises 55P03 naming the session that holds the lock; nothing was changed.
    """
    return f"""DO $proxy_leases_deploy$
DECLARE
    give_up constant timestamptz := clock_timestamp() + interval {_literal(wait)};
    holder text;
BEGIN
    WHILE NOT pg_try_advisory_lock({LOCK_KEYS}) LOOP
        IF clock_timestamp() > give_up THEN
            SELECT format('session pid %s (%L, user %s, from %s, connected since %s)', pid, app, usr, client,
                          date_trunc('second', since))
              INTO holder
              FROM ({HOLDER.strip()}) AS h(pid, app, usr, client, since);
            RAISE EXCEPTION 'proxy-leases: another deploy still runs after deploy_wait=%: %',
                            {_literal(wait)}, coalesce(holder, 'a session that has since ended')
                USING ERRCODE = 'lock_not_available',
                      DETAIL = 'Nothing was changed by this run.',
                      HINT = 'Wait for it to end (pg_stat_activity shows what it runs), or give it longer '
                             'with -x deploy_wait=30min (proxy-leases --deploy-wait 30min).';
        END IF;
        COMMIT;  -- ends this try's transaction: see deploy_lock.py on CREATE INDEX CONCURRENTLY
        PERFORM pg_sleep({POLL_SECONDS});
    END LOOP;
END
$proxy_leases_deploy$"""


def application_name() -> str:
    """What pg_stat_activity shows for a deploy, so that the one waiting can name the one it waits for."""
    return f"proxy-leases deploy ({socket.gethostname()} pid {os.getpid()})"[:63]


def describe_holder(conn: psycopg.Connection) -> str:
    row = conn.execute(HOLDER).fetchone()
    if row is None:
        return "a session that has since ended"
    pid, app, user, client, started = row
    return f"session pid {pid} ({app!r}, user {user}, from {client}, connected since {started.replace(microsecond=0)})"


@contextlib.contextmanager
def held(conn: psycopg.Connection, wait: str) -> Iterator[float]:
    """Hold the deploy lock on `conn` (autocommit) for the block; yields how long it waited, in seconds."""
    started = time.monotonic()
    if not conn.execute(TRY_TAKE).fetchone()[0]:
        log.info("another deploy holds the lock: %s; waiting up to deploy_wait=%s", describe_holder(conn), wait)
        try:
            conn.execute(take_sql(wait))
        except psycopg.errors.LockNotAvailable as error:
            diag = error.diag
            raise SystemExit(f"{diag.message_primary}. {diag.message_detail} {diag.message_hint}") from None
        log.info("waited %.1f s for the other deploy", time.monotonic() - started)
    try:
        yield time.monotonic() - started
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute(RELEASE)
