"""The end-of-run summary (proxy_leases/migrations/run_summary.py), as an operator running the command sees it.

The incident's database is upgraded as a superuser and as the non-superuser owner of the fleet's
tables: the summary names the revisions, the tables, the backfilled rows, the roles and the pg_cron
job as it is at the end; where nothing will run the maintenance it says so last and the command
exits 3, and the statements it prints are the ones that fix it.
"""

import psycopg
import pytest

from proxy_leases.migrations.pg_cron import job_name
from proxy_leases.migrations.run_summary import NO_SWEEPER_EXIT
from tools.harness import CRON_DATABASE, HEAD, Database, load_legacy_incident, proxy_leases_cli

OWNER = "summary_owner"


def summary_of(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("proxy-leases summary for database "))
    return lines[start:]


def incident_with_a_half_held_proxy(database: Database) -> None:
    load_legacy_incident(database)
    database.run("UPDATE proxies SET is_in_use = true WHERE id = 61")   # in use, by nobody


def test_a_superusers_upgrade_summarises_what_it_did_once_and_last(fresh_database, pg_server):
    database = fresh_database()
    incident_with_a_half_held_proxy(database)
    upgraded = proxy_leases_cli("upgrade", env={"DATABASE_URL": database.url})
    assert upgraded.returncode == 0, upgraded.stderr
    summary = summary_of(upgraded.stderr)
    assert summary[0] == f"proxy-leases summary for database {database.name}, as role postgres (a superuser):"
    assert summary[1] == f"  revision: (not installed) -> {HEAD}"
    assert summary[2] == ("  tables: adopted catalog_tasks, object_tasks, proxies (kept with their rows); created "
                          "proxy_lease_events, proxy_lease_settings, proxy_leases_adopted_tables, "
                          "proxy_leases_alembic_version")
    # The backfill's trace: how many and which, said before the rows changed and again in the summary.
    freed = ("0004_lease_backfill frees 1 half-held proxies (in use with no worker, a worker but not in use, "
             "or in use unknown): ids 61")
    assert f"  backfill: {freed}" in summary
    assert upgraded.stderr.count(f"NOTICE: proxy-leases backfill: {freed}") == 1
    assert "  backfill: 0004_lease_backfill gives 60 held proxies a lease from now: ids 1, 2, 3, 4, 5, 6, 7, 8, 9, " \
           "10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, ..." in summary
    # The job was created by 0005 and replaced by 0009 within the run: reported once, as it is now.
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        jobid, = conn.execute("SELECT jobid FROM cron.job WHERE jobname = %s", (job_name(database.name),)).fetchone()
    sweeper_lines = [line for line in upgraded.stderr.splitlines() if "proxy_leases_sweep." in line]
    assert sweeper_lines == [
        f"  pg_cron job {jobid} proxy_leases_sweep.{database.name}: 'CALL public.run_lease_maintenance()' in database "
        f"{database.name}, schedule '* * * * *' (GMT), as role postgres"]
    # The superuser warning: once, in the summary.
    assert upgraded.stderr.count("a superuser, because that role ran the upgrade") == 1
    assert "NOT SCHEDULED" not in upgraded.stderr and "DELETE FROM cron.job_run_details" not in upgraded.stderr
    # Idempotence notices (DROP INDEX IF EXISTS ... skipping) are not news.
    assert "skipping" not in upgraded.stderr

    # Run again at head: nothing to do, and the summary still checks that the job is there.
    again = proxy_leases_cli("upgrade", env={"DATABASE_URL": database.url})
    assert again.returncode == 0, again.stderr
    assert f"  revision: {HEAD}, unchanged" in summary_of(again.stderr)


@pytest.fixture
def owner_database(fresh_database, pg_server):
    """The incident's database, its tables owned by a role that is not a superuser and has no pg_cron grants."""
    database = fresh_database()
    database.run(f"CREATE ROLE {OWNER} LOGIN")
    database.run(f'ALTER DATABASE "{database.name}" OWNER TO {OWNER}')
    database.run(f"ALTER SCHEMA public OWNER TO {OWNER}")
    owner = Database(database.url.replace("postgres@", f"{OWNER}@"))
    incident_with_a_half_held_proxy(owner)
    try:
        yield owner
    finally:
        with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = %s", (OWNER,))
            conn.execute(f'DROP DATABASE "{database.name}" WITH (FORCE)')
            conn.execute(f"DROP OWNED BY {OWNER}")
            conn.execute(f"DROP ROLE {OWNER}")


def test_an_owner_without_pg_cron_grants_gets_exit_3_the_reason_and_the_statements_that_fix_it(
        owner_database, pg_server):
    log_before = len(pg_server.server_log())
    upgraded = proxy_leases_cli("upgrade", env={"DATABASE_URL": owner_database.url})
    # The role's missing right is found without being refused: no ERROR in the server log for it.
    assert "shared_preload_libraries" not in pg_server.server_log()[log_before:]
    assert upgraded.returncode == NO_SWEEPER_EXIT, upgraded.stderr
    assert owner_database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    summary = summary_of(upgraded.stderr)
    assert summary[0] == f"proxy-leases summary for database {owner_database.name}, as role {OWNER}:"
    assert summary[-1].startswith("NOT SCHEDULED: nothing will run CALL public.run_lease_maintenance()")
    assert "the upgrade exits with status 3" in summary[-1]
    assert f"role {OWNER} needs pg_read_all_settings" in "\n".join(summary)
    # The per-step messages are merged into the summary's one reason.
    assert upgraded.stderr.count("could not tell whether pg_cron is preloaded") == 1

    # The statements the summary gives, run as it says: superuser grants, then the owner's own.
    fix = summary[summary.index("  To fix it:") + 1:-1]
    grants = [line.strip() for line in fix if line.strip().startswith("GRANT")]
    schedule = [line.strip() for line in fix if line.strip().startswith("SELECT cron.")]
    assert grants[0] == f"GRANT pg_read_all_settings TO {OWNER};" and len(schedule) == 4
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        for statement in grants:
            conn.execute(statement)
    with psycopg.connect(pg_server.url(CRON_DATABASE).replace("postgres@", f"{OWNER}@"), autocommit=True) as conn:
        for statement in schedule:
            conn.execute(statement)

    again = proxy_leases_cli("upgrade", env={"DATABASE_URL": owner_database.url})
    assert again.returncode == 0, again.stderr
    assert any(line.startswith("  pg_cron job ") and f"proxy_leases_sweep.{owner_database.name}" in line
               and line.endswith(f"as role {OWNER}") for line in summary_of(again.stderr))
    assert "superuser" not in again.stderr


def test_cron_auto_given_explicitly_accepts_no_sweeper_and_cron_off_leaves_it_to_the_operator(owner_database):
    accepted = proxy_leases_cli("upgrade", "--cron", "auto", env={"DATABASE_URL": owner_database.url})
    assert accepted.returncode == 0, accepted.stderr
    assert summary_of(accepted.stderr)[-1].startswith("NOT SCHEDULED: ")
    assert "cron=auto was given, so the exit status is 0" in summary_of(accepted.stderr)[-1]

    off = proxy_leases_cli("upgrade", "--cron", "off", env={"DATABASE_URL": owner_database.url})
    assert off.returncode == 0, off.stderr
    assert summary_of(off.stderr)[-1] == (
        "  pg_cron: left alone (cron=off). Run CALL public.run_lease_maintenance() every minute from your own "
        "scheduler (docs/operations.md, 'Without pg_cron').")


def test_a_downgrade_to_base_says_what_it_removed_and_which_roles_it_kept(fresh_database, pg_server):
    database = fresh_database()
    database.upgrade(cron="auto")
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        jobs = conn.execute("SELECT jobid, jobname FROM cron.job WHERE database = %s OR jobname LIKE %s ORDER BY 1",
                            (database.name, f"%.{database.name}")).fetchall()
    assert len(jobs) == 2
    database.run("CREATE ROLE summary_worker IN ROLE proxy_leases_worker")
    try:
        removed = proxy_leases_cli("downgrade", "base", env={"DATABASE_URL": database.url})
        assert removed.returncode == 0, removed.stderr
        summary = summary_of(removed.stderr)
        assert f"  revision: {HEAD} -> (not installed)" in summary
        assert ("  tables: removed catalog_tasks, object_tasks, proxies, proxy_lease_events, proxy_lease_settings, "
                "proxy_leases_adopted_tables; kept proxy_leases_alembic_version, empty (docs/install.md, 'Uninstalling')"
                in summary)
        assert ("  role proxy_leases_worker: kept, it has members (summary_worker). docs/install.md, 'Uninstalling' "
                "shows how to drop it") in summary
        assert summary[-2:] == [f"  pg_cron job {jobid} {name}: removed" for jobid, name in jobs]
    finally:
        database.run("DROP ROLE summary_worker")


def test_the_sql_script_ends_by_saying_that_it_schedules_nothing(fresh_database):
    from tools.harness import alembic_cli

    database = fresh_database()
    script = alembic_cli("upgrade", "head", "--sql", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    applied = __import__("subprocess").run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database.url], input=script.stdout,
        capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip().splitlines()[-1] == (
        "proxy-leases: NOT SCHEDULED by this script: its pg_cron steps were not run. Run the statements of "
        "`proxy-leases sql --cron` in pg_cron's database.")
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
