"""The database URL and the first connection, for the migrations and the operator's commands alike.

A URL for another driver (psycopg2, asyncpg: the fleet's own) is run on psycopg 3. A URL that is not
one, or names another database system, and a server that cannot be reached, are one clear line
(SystemExit), never a traceback.
"""

from __future__ import annotations

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import make_url

NO_URL = ("proxy-leases: no database given. Set DATABASE_URL=postgresql://user@host:port/dbname "
          "(or pass --url to proxy-leases, -x url=... to alembic).")


def psycopg_url(url: str | None) -> str:
    """``url`` checked and set to SQLAlchemy's psycopg 3 driver (postgresql+psycopg://...)."""
    if not url:
        raise SystemExit(NO_URL)
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 -- a port that is not a number fails here, not in the middle of a run
    except (exc.ArgumentError, ValueError):
        raise SystemExit("proxy-leases: the database URL is not a URL: expected "
                         "postgresql://user[:password]@host[:port]/dbname") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise SystemExit(f"proxy-leases: {parsed.render_as_string(hide_password=True)} is not a PostgreSQL "
                         "URL: expected postgresql://user[:password]@host[:port]/dbname")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def connect(url: str, application_name: str, **options: object) -> psycopg.Connection:
    """An autocommit psycopg connection to ``url`` (as psycopg_url returns it); ``options`` go to libpq."""
    parsed = make_url(url)
    try:
        return psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False),
                               autocommit=True, application_name=application_name, **options)
    except psycopg.OperationalError as error:
        where = f"{parsed.host or 'the local socket'}:{parsed.port or 5432}"
        words = " ".join(str(error).split())
        raise SystemExit(f"proxy-leases: cannot connect to PostgreSQL at {where} "
                         f"(database {parsed.database or '(libpq default)'}, user {parsed.username}): {words}") from None
