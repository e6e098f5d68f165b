"""Alembic environment for proxy-leases: one transaction per revision, psycopg 3 underneath."""

import os

from alembic import context
from sqlalchemy import create_engine, exc, pool
from sqlalchemy.engine import make_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "proxy-leases: no database given. Set DATABASE_URL=postgresql://user@host:port/dbname "
            "(or pass -x url=...)."
        )
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def lock_timeout() -> str:
    """How long a revision may wait for a lock on the fleet's tables before it gives up cleanly.

    Every statement that waits for a lock makes the fleet's statements queue behind it: a revision
    stuck behind a long transaction must fail fast rather than stop every worker.
    """
    return (context.get_x_argument(as_dictionary=True).get("lock_timeout")
            or os.environ.get("PROXY_LEASES_LOCK_TIMEOUT") or "5s")


LOCK_TIMEOUT_HELP = """proxy-leases: a revision could not take its locks within lock_timeout={timeout} \
(SQLSTATE 55P03 or 40P01): a transaction that has been open for a while holds proxies, \
proxy_lease_settings, catalog_tasks or object_tasks (or, for the pg_cron steps 0005, 0009 and 0011, \
cron.job in pg_cron's database). Most revisions run in one transaction and changed \
nothing; 0007_lease_api_backfill commits its tokens before validating, and they are kept. Every step \
is safe to run again, and `alembic current` shows where the database is.
The database said: {error}
Find the transaction{where}:
  SELECT pid, xact_start, state, left(query, 80) FROM pg_stat_activity
   WHERE xact_start < now() - interval '{timeout}' ORDER BY xact_start;
then run the same command again when it has ended, or give it longer with -x lock_timeout=30s."""


def connect_args() -> dict:
    """For every connection a revision opens, pg_cron's included (migrations/pg_cron.py)."""
    return {"options": "-c lock_timeout=" + lock_timeout().replace(" ", "\\ ")}


config.attributes["lock_timeout"] = lock_timeout()
config.attributes["connect_args"] = connect_args()


def run_migrations_offline() -> None:
    config.attributes["offline_database"] = make_url(database_url()).database
    # paramstyle "named": otherwise every % in PL/pgSQL (RAISE '... %') comes out doubled.
    context.configure(
        url=database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    context.execute(f"SET lock_timeout = '{lock_timeout()}'")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Set at connection start-up: nothing may run on this connection before configure(), or
    # SQLAlchemy 2 opens a transaction and Alembic silently drops transaction_per_migration.
    engine = create_engine(database_url(), poolclass=pool.NullPool, connect_args=connect_args())
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        try:
            with context.begin_transaction():
                context.run_migrations()
        except exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) in ("55P03", "40P01"):
                where = getattr(error, "proxy_leases_database", None)
                raise SystemExit(LOCK_TIMEOUT_HELP.format(
                    timeout=lock_timeout(), error=str(error.orig).strip().replace("\n", " "),
                    where=f" (in database {where}, where pg_cron lives)" if where else "")) from error
            raise


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
