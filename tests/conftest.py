"""One throwaway PostgreSQL (pg_cron preloaded) per test session; one migrated database per test.

The template database is migrated once with Alembic, exactly as a user would, except that it gets
no pg_cron job (cron=off): each test's database is a clone of it, and tests that are about
migrations or pg_cron make their own database from scratch with the `fresh_database` fixture.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

from tests.helpers import Database, alembic
from tools.throwaway_postgres import CRON_DATABASE, ThrowawayPostgres


class Server(ThrowawayPostgres):
    """The cluster, in the shape pytest-postgresql's depends_on expects."""

    password = None
    options = ""
    maintenance_dbname = CRON_DATABASE
    template_dbname = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server = Server()
    server.start()
    with psycopg.connect(server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_cron")
    yield server
    server.stop()


def migrate_template(host: str, port: int, user: str, dbname: str, password: str | None, **_: object) -> None:
    alembic(f"postgresql://{user}@{host}:{port}/{dbname}", "upgrade", "head", cron="off")


fleet_template = factories.postgresql_noproc(depends_on="pg_server", dbname="fleet", load=[migrate_template])
fleet_connection = factories.postgresql("fleet_template")


@pytest.fixture
def db(pg_server: Server, fleet_connection: psycopg.Connection) -> Database:
    """A database at head (no pg_cron job), dropped after the test."""
    name = fleet_connection.info.dbname
    fleet_connection.close()
    return Database(pg_server.url(name))


_database_numbers = itertools.count(1)


@pytest.fixture
def fresh_database(pg_server: Server) -> Iterator[Callable[[], Database]]:
    """Make empty databases on the session's server; all are dropped after the test."""
    made: list[str] = []

    def make() -> Database:
        name = f"fresh_{next(_database_numbers)}"
        with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return Database(pg_server.url(name))

    yield make
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        for name in made:
            conn.execute(
                "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %s", (name,)
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
