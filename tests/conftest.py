"""One throwaway PostgreSQL (pg_cron preloaded) per test session; one migrated database per test.

The template database is migrated once with Alembic, exactly as a user would, except that it gets
no pg_cron job (cron=off): each test's database is a clone of it, and tests that are about
migrations or pg_cron make their own database from scratch with the `fresh_database` fixture.

The server is the newest one under /usr/lib/postgresql, or the one in PG_BINDIR: scripts/test_versions
runs the suite's core on other major versions that way (scripts/other_postgres installs them). Those
servers have no pg_cron, and PostgreSQL 16's has no auto_explain: the tests that need what the server
lacks are marked (`pg_cron`, `auto_explain`) and skipped there, with the reason. Without pg_cron, the
session's server gets an empty stand-in for what tests read of it (STAND_IN_CRON).
"""

from __future__ import annotations

import inspect
import itertools
import subprocess
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

from tools.harness import (CRON_DATABASE, Database, ThrowawayPostgres, alembic, drop_database, find_bindir,
                           has_extension, has_library, server_version)

# What needs pg_cron on the session's server: tests that read cron.job, upgrade with cron=auto or
# require and expect a job, or start a server with pg_cron preloaded. In test_pg_cron.py every test
# does, except those named here; elsewhere, only those named.
PG_CRON_NOT_NEEDED_IN_TEST_PG_CRON = {
    "test_without_pg_cron_the_upgrade_warns_and_succeeds",
    "test_without_pg_cron_cron_require_fails_the_upgrade",
    "test_names_in_a_job_command_are_quoted_whatever_the_string_syntax",
}
PG_CRON_NEEDED = {
    "test_migrations.py": {"test_a_url_that_names_no_database_upgrades_the_one_libpq_picks"},
    "test_upgrade_safety.py": {"test_a_pg_cron_step_whose_new_job_is_refused_keeps_the_old_job_and_the_revision"},
    "test_run_summary.py": {"test_a_superusers_upgrade_summarises_what_it_did_once_and_last",
                            "test_an_owner_without_pg_cron_grants_gets_exit_3_the_reason_and_the_statements_that_fix_it",
                            "test_cron_auto_given_explicitly_accepts_no_sweeper_and_cron_off_leaves_it_to_the_operator",
                            "test_a_downgrade_to_base_says_what_it_removed_and_which_roles_it_kept"},
    # Servers of their own, with pg_cron preloaded: the soak's, and a primary whose job must follow a failover.
    "test_server_crash.py": {"test_two_server_crashes_under_load_lose_no_committed_grant_and_tokens_keep_increasing"},
    "test_failover.py": {"test_a_failover_to_a_synchronous_standby_double_grants_nothing_and_the_maintenance_follows"},
}
# These run every step, and compare pg_cron's jobs before and after it: only the steps that schedule
# or unschedule a job (test_upgrade_safety.CRON_REVISIONS, run with cron=auto) need pg_cron; for the
# others an empty cron.job will do (STAND_IN_CRON below).
PG_CRON_NEEDED_FOR_CRON_REVISIONS = {
    "test_upgrade_safety.py": {"test_a_step_behind_a_held_lock_fails_fast_with_instructions_and_changes_nothing",
                               "test_a_step_that_fails_midway_leaves_the_previous_revision_intact"},
}
# Where pg_cron is not installed, what the tests read of it exists all the same, empty, in pg_cron's
# database: a step can change no job where there is no pg_cron. It is no extension, and is not in
# shared_preload_libraries, which is what proxy-leases looks at: with cron=auto it still finds none.
STAND_IN_CRON = """
CREATE SCHEMA cron;
COMMENT ON SCHEMA cron IS 'the tests'' empty stand-in: pg_cron is not installed on this server';
CREATE TABLE cron.job (jobid bigint PRIMARY KEY, schedule text, command text, nodename text, nodeport int,
                       database text, username text, active boolean, jobname text);
CREATE FUNCTION cron.unschedule(job_id bigint) RETURNS boolean LANGUAGE sql AS 'SELECT false';
"""


def needs_pg_cron(item: pytest.Item) -> bool:
    module = item.path.name
    name = getattr(item, "originalname", item.name)
    if module == "test_pg_cron.py":
        return name not in PG_CRON_NOT_NEEDED_IN_TEST_PG_CRON
    if name in PG_CRON_NEEDED_FOR_CRON_REVISIONS.get(module, ()):
        callspec = getattr(item, "callspec", None)
        rev = callspec.params.get("rev") if callspec else None
        return rev is None or rev in getattr(item.module, "CRON_REVISIONS", ())
    return name in PG_CRON_NEEDED.get(module, ())


def _source(function: object) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


_plan_readers: dict[object, set[str]] = {}


def plan_readers(module: object) -> set[str]:
    """Names of the module's functions that call tests.helpers.executed_plans, directly or through
    another such function of the module (e.g. test_sweeper's sweep_plans)."""
    if module not in _plan_readers:
        functions = {name: _source(value) for name, value in vars(module).items()
                     if inspect.isfunction(value) and value.__module__ == module.__name__}
        readers = {"executed_plans"}
        while True:
            more = {name for name, source in functions.items()
                    if name not in readers and any(f"{reader}(" in source for reader in readers)}
            if not more:
                break
            readers |= more
        _plan_readers[module] = readers
    return _plan_readers[module]


def needs_auto_explain(item: pytest.Item) -> bool:
    """A test that calls tests.helpers.executed_plans (itself, or through a function of its module)
    reads plans that auto_explain logs."""
    function, module = getattr(item, "function", None), getattr(item, "module", None)
    if function is None or module is None:
        return False
    source = _source(function)
    return any(f"{reader}(" in source for reader in plan_readers(module))


# The folders the tests are kept in, by kind (tests/README.md); each test gets its folder's marker.
KINDS = {
    "behaviour": "what the installed functions, triggers and views do (scripts/test --quick runs these alone)",
    "upgrades": "installing, upgrading and removing proxy-leases on a live database",
    "concurrency": "forced interleavings, many workers at once, and the crash soak",
    "benchmarks": "the benchmark scripts still run in their quick mode",
}


def pytest_configure(config: pytest.Config) -> None:
    for kind, what in KINDS.items():
        config.addinivalue_line("markers", f"{kind}: {what}")
    config.addinivalue_line("markers", "pg_cron: needs pg_cron on the server (skipped where it is not installed)")
    config.addinivalue_line("markers", "auto_explain: needs the auto_explain module (skipped where it is missing)")


def server_facts() -> tuple[str, str, bool, bool] | None:
    """(bindir, version, has pg_cron, has auto_explain) of the server the session will start, or None
    when there is none (the pg_server fixture then says so)."""
    try:
        bindir = find_bindir()
        version = "%d.%d" % server_version(bindir)
    except (RuntimeError, OSError, subprocess.CalledProcessError):
        return None
    return bindir, version, has_extension(bindir, "pg_cron"), has_library(bindir, "auto_explain")


def pytest_report_header(config: pytest.Config) -> str:
    facts = server_facts()
    if facts is None:
        return "postgresql: no server found"
    bindir, version, has_pg_cron, has_auto_explain = facts
    return (f"postgresql: {version} in {bindir}; pg_cron {'installed' if has_pg_cron else 'absent'}; "
            f"auto_explain {'installed' if has_auto_explain else 'absent'}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    facts = server_facts()
    bindir, version, has_pg_cron, has_auto_explain = facts or ("", "", True, True)
    for item in items:
        kind = item.path.parent.name
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.path} is not in a folder of tests/ by kind ({', '.join(KINDS)}): "
                                    "move it into the one that says what it proves (tests/README.md)")
        item.add_marker(getattr(pytest.mark, kind))
        if needs_pg_cron(item):
            item.add_marker(pytest.mark.pg_cron)
            if not has_pg_cron:
                item.add_marker(pytest.mark.skip(
                    reason=f"needs pg_cron, which PostgreSQL {version} in {bindir} does not have"))
        if needs_auto_explain(item):
            item.add_marker(pytest.mark.auto_explain)
            if not has_auto_explain:
                item.add_marker(pytest.mark.skip(
                    reason=f"reads plans through auto_explain, which PostgreSQL {version} in {bindir} does not ship"))


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
        conn.execute("CREATE EXTENSION pg_cron" if server.preload_pg_cron else STAND_IN_CRON)
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
    for name in made:
        drop_database(pg_server, name)
