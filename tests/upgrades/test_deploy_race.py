"""Deploys that race: every mutating run holds the deploy lock (proxy_leases/migrations/deploy_lock.py).

Three upgrades started together all succeed, one doing the work and the others finding the database at
head; a deploy waiting for the lock holds nothing else; the wait is bounded and names who holds it; the
--sql script waits for the same lock. Forced interleavings: a session of the test holds the lock.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import psycopg
import pytest

from tests.helpers import catalog
from tools.harness import HEAD, REVISION_COUNT, ROOT, load_legacy_incident, proxy_leases_cli

TAKE = "SELECT pg_advisory_lock(hashtext('proxy_leases.upgrade'), 0)"
RUNNING_UPGRADE = re.compile(r"Running upgrade")
WAITED = re.compile(r"waited (\d+\.\d) s for the other deploy")


def start_upgrade(database, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["env", "-u", "DATABASE_URL", f"PYTHONPATH={ROOT}", sys.executable, "-c", "import sys; from proxy_leases.cli import main; sys.exit(main())",
         "upgrade", "--cron", "off", "--url", database.url, *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def holder(database, name: str = "deploy job A") -> psycopg.Connection:
    conn = database.connect(application_name=name)
    conn.execute(TAKE)
    return conn


def lock_waiters(database) -> list[int]:
    """Sessions polling for the deploy lock (deploy_lock.take_sql: they never block in pg_advisory_lock)."""
    return [row[0] for row in database.all(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE '%%WHILE NOT pg_try_advisory_lock(hashtext(''proxy_leases.upgrade''), 0)%%'"
        " AND state = 'active'")]


def wait_for_a_waiting_deploy(database, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (waiting := lock_waiters(database)):
        assert time.monotonic() < deadline, "no deploy waited for the deploy lock"
        time.sleep(0.02)
    return waiting[0]


@pytest.mark.parametrize("starting_from", ["an empty database", "the incident's legacy database"])
def test_three_deploys_at_once_all_succeed_and_one_does_the_work(fresh_database, starting_from):
    database, reference = fresh_database(), fresh_database()
    if starting_from != "an empty database":
        load_legacy_incident(database)
        load_legacy_incident(reference)
    done = proxy_leases_cli("upgrade", "--cron", "off", env={"DATABASE_URL": reference.url})
    assert done.returncode == 0, done.stderr

    deploys = [start_upgrade(database) for _ in range(3)]
    results = [finish(deploy) for deploy in deploys]

    assert [code for code, _ in results] == [0, 0, 0], [err for _, err in results]
    did_the_work = [err for _, err in results if RUNNING_UPGRADE.search(err)]
    assert len(did_the_work) == 1
    assert len(RUNNING_UPGRADE.findall(did_the_work[0])) == REVISION_COUNT  # every revision, once
    waited = [float(m.group(1)) for _, err in results if (m := WAITED.search(err))]
    assert len(waited) >= 1, [err for _, err in results]  # they overlapped: someone waited
    print(f"\n{starting_from}: the later deploys waited {waited} s")
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert catalog(database) == catalog(reference)


def test_a_waiting_deploy_holds_no_lock_on_any_table_and_goes_on_when_the_holder_ends(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    first = holder(database)
    deploy = start_upgrade(database)
    waiting_pid = wait_for_a_waiting_deploy(database)

    # Nothing of the fleet's is locked by the waiting deploy, and it has opened nothing else.
    assert database.all("SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND relation IS NOT NULL"
                        " AND relation::regclass::text NOT LIKE 'pg_%%'", (waiting_pid,)) == []
    assert database.one("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'proxy-leases deploy%%'"
                        " AND pid <> %s AND datname = current_database()", (waiting_pid,)) == 0
    assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None

    first.close()  # the first deploy's session ends (as if it had finished, or died)
    code, stderr = finish(deploy)
    assert code == 0, stderr
    assert "another deploy holds the lock: session pid" in stderr and "'deploy job A'" in stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_a_deploy_that_waits_too_long_names_the_holder_and_changes_nothing(fresh_database):
    database = fresh_database()
    load_legacy_incident(database)
    before = catalog(database)
    with holder(database, "deploy job A") as first:
        holder_pid = first.info.backend_pid
        started = time.monotonic()
        code, stderr = finish(start_upgrade(database, "--deploy-wait", "1s"))
        elapsed = time.monotonic() - started
    assert code == 1
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("proxy-leases: another deploy still runs after deploy_wait=1s: "
                                f"session pid {holder_pid} ('deploy job A', user postgres, from 127.0.0.1")
    assert "Nothing was changed by this run" in last_line and "--deploy-wait 30min" in last_line
    assert elapsed < 15
    assert catalog(database) == before


def test_the_sql_script_waits_for_the_same_lock(fresh_database, tmp_path):
    database = fresh_database()
    script = proxy_leases_cli("sql", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    (tmp_path / "upgrade.sql").write_text(script.stdout)
    with holder(database) as first:
        psql = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", tmp_path / "upgrade.sql",
                                 database.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_a_waiting_deploy(database)
        assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None
        first.execute("SELECT pg_advisory_unlock(hashtext('proxy_leases.upgrade'), 0)")
        _, errors = psql.communicate(timeout=120)
        assert psql.returncode == 0, errors
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert lock_waiters(database) == []


def test_the_sql_script_gives_up_after_deploy_wait_naming_the_holder(fresh_database, tmp_path):
    database = fresh_database()
    script = proxy_leases_cli("sql", "--deploy-wait", "1s", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    (tmp_path / "upgrade.sql").write_text(script.stdout)
    with holder(database, "deploy job A") as first:
        applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", tmp_path / "upgrade.sql",
                                  database.url], capture_output=True, text=True, timeout=60)
        holder_pid = first.info.backend_pid
    assert applied.returncode == 3
    assert (f"ERROR:  proxy-leases: another deploy still runs after deploy_wait=1s: session pid {holder_pid} "
            "('deploy job A', user postgres, from 127.0.0.1") in applied.stderr
    assert "DETAIL:  Nothing was changed by this run." in applied.stderr
    assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None
