"""proxy-leases beside the fleet's own Alembic history (tests/upgrades/fleet_project), as a fleet installs it.

The fleet's revision lives in alembic_version; proxy-leases' in proxy_leases_alembic_version. Neither
tool reads the other's, the fleet's row never changes, and the fleet's autogenerate, given the hook
from proxy_leases.autogenerate, finds nothing to do on a database where proxy-leases is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import past_the_grace, sweep
from tools.harness import DEMO_DIR, HEAD, ROOT, alembic_cli, pool_figures, proxy_leases_cli

FLEET_PROJECT = Path(__file__).resolve().parent / "fleet_project"
FLEET_REVISION = "3f1c0a2b9d4e"
HOOK_LINES = re.compile(r"^.*# proxy-leases: [12] of 3\n", re.MULTILINE)
# Alembic's own DDL for its version table: what an install made before 0.16 left behind.
OLD_VERSION_TABLE = ("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, "
                     "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")


def fleet_alembic(project: Path, database, *args: str) -> subprocess.CompletedProcess:
    """The fleet's alembic command, run in its own project with proxy-leases importable (installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_LEASES_")}
    env.update(DATABASE_URL=database.url, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(project / "alembic.ini"), *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fleet_project(tmp_path) -> Path:
    project = tmp_path / "fleet"
    shutil.copytree(FLEET_PROJECT, project)
    return project


@pytest.fixture
def incident_fleet(fresh_database, fleet_project):
    """The incident's pool in tables the fleet's own Alembic created, its alembic_version at its revision."""
    database = fresh_database()
    done = fleet_alembic(fleet_project, database, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    with database.connect() as conn:
        conn.execute((DEMO_DIR / "incident_state.sql").read_text())
    assert pool_figures(database) == (100, 60, 27, 13)
    return database


def fleet_row(database) -> list[tuple]:
    return database.all("SELECT * FROM alembic_version")


def test_the_incident_database_with_its_own_alembic_history_gets_proxy_leases_and_keeps_its_row(
        incident_fleet, fleet_project):
    database = incident_fleet
    env = {"DATABASE_URL": database.url}

    installed = proxy_leases_cli("upgrade", "--cron", "off", env=env)
    assert installed.returncode == 0, installed.stderr
    assert fleet_row(database) == [(FLEET_REVISION,)]
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    # The checkout's alembic sees the same history, and has nothing left to do.
    again = alembic_cli("-x", "cron=off", "upgrade", "head", env=env)
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr
    for current in (proxy_leases_cli("current", env=env), alembic_cli("current", env=env)):
        assert current.returncode == 0, current.stderr
        assert f"{HEAD} (head)" in current.stdout
    fleet_current = fleet_alembic(fleet_project, database, "current")
    assert f"{FLEET_REVISION} (head)" in fleet_current.stdout, fleet_current.stderr

    # What the incident needed: the 16 stuck proxies go back to the pool after the grace.
    past_the_grace(database)
    assert sweep(database) == 16
    assert pool_figures(database) == (100, 44, 27, 29)

    history = proxy_leases_cli("history", env=env)
    assert history.returncode == 0 and "0001_fleet_schema" in history.stdout and FLEET_REVISION not in history.stdout

    removed = proxy_leases_cli("downgrade", "base", env=env)
    assert removed.returncode == 0, removed.stderr
    assert database.one("SELECT count(*) FROM proxy_leases_alembic_version") == 0
    assert fleet_row(database) == [(FLEET_REVISION,)]
    assert database.one("SELECT to_regclass('proxy_lease_events')") is None
    assert pool_figures(database) == (100, 44, 27, 29)  # the fleet's tables and rows stay

    stamped = alembic_cli("stamp", "0003_lease", env=env)
    assert stamped.returncode == 0, stamped.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0003_lease"
    assert fleet_row(database) == [(FLEET_REVISION,)]


def test_the_offline_script_installs_beside_the_fleets_history(incident_fleet):
    database = incident_fleet
    script = proxy_leases_cli("sql", env={"DATABASE_URL": database.url})
    assert script.returncode == 0, script.stderr
    assert "alembic_version (" not in script.stdout.replace("proxy_leases_alembic_version (", "")
    applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database.url],
                             input=script.stdout, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert fleet_row(database) == [(FLEET_REVISION,)]


def generated_operations(project: Path, database) -> str:
    """The body of upgrade() in the revision the fleet's autogenerate writes now."""
    made = fleet_alembic(project, database, "revision", "--autogenerate", "-m", "fleet change")
    assert made.returncode == 0, made.stderr
    [revision] = [path for path in (project / "versions").glob("*.py") if FLEET_REVISION not in path.name]
    source = revision.read_text()
    revision.unlink()
    return source.split("def upgrade() -> None:", 1)[1].split("def downgrade", 1)[0]


def test_the_fleets_autogenerate_finds_nothing_to_do_with_proxy_leases_installed(incident_fleet, fleet_project):
    database = incident_fleet
    installed = proxy_leases_cli("upgrade", "--cron", "off", env={"DATABASE_URL": database.url})
    assert installed.returncode == 0, installed.stderr

    upgrade = generated_operations(fleet_project, database)
    assert "op." not in upgrade and "pass" in upgrade, upgrade
    check = fleet_alembic(fleet_project, database, "check")
    assert check.returncode == 0 and "No new upgrade operations detected" in check.stdout, check.stderr

    # A change of the fleet's own is still seen, on the very table proxy-leases added columns to.
    (fleet_project / "models.py").write_text((fleet_project / "models.py").read_text().replace(
        "    updated_at = Column(DateTime(timezone=True), server_default=func.now())\n",
        "    updated_at = Column(DateTime(timezone=True), server_default=func.now())\n"
        "    country = Column(String(2))\n", 1))
    upgrade = generated_operations(fleet_project, database)
    assert re.findall(r"op\.\w+\(.*", upgrade) == ["op.add_column('proxies', sa.Column('country', "
                                                   "sa.String(length=2), nullable=True))"]


def test_without_the_hook_the_fleets_autogenerate_would_drop_proxy_leases(incident_fleet, fleet_project):
    """The control: what the two lines in the fleet's env.py prevent."""
    database = incident_fleet
    installed = proxy_leases_cli("upgrade", "--cron", "off", env={"DATABASE_URL": database.url})
    assert installed.returncode == 0, installed.stderr
    env_py = fleet_project / "env.py"
    env_py.write_text(HOOK_LINES.sub("", env_py.read_text()))

    upgrade = generated_operations(fleet_project, database)
    for doomed in ("op.drop_table('proxy_lease_events')", "op.drop_table('proxy_lease_settings')",
                   "op.drop_table('proxy_leases_alembic_version')", "op.drop_column('proxies', 'lease_token')",
                   "op.drop_column('proxies', 'released_lease_token')",
                   "op.drop_index(op.f('proxies_free_rotation_idx')"):
        assert doomed in upgrade
    operations = re.findall(r"op\.(\w+)\(", upgrade)
    # 6 tables (and the 3 indexes of proxy_lease_events), the 11 columns of proxies, the 5 indexes on fleet tables
    assert {op: operations.count(op) for op in set(operations)} == {"drop_table": 6, "drop_column": 11,
                                                                     "drop_index": 8, "f": 8}


def test_the_hook_keeps_nothing_of_the_fleets_own():
    from proxy_leases.autogenerate import owned_by_proxy_leases

    assert not owned_by_proxy_leases("proxies", "table", None)
    assert not owned_by_proxy_leases("worker_id", "column", "proxies")
    assert not owned_by_proxy_leases("lease_token", "column", "catalog_tasks")
    assert owned_by_proxy_leases("lease_token", "column", "proxies")
    assert owned_by_proxy_leases("proxy_lease_events_pkey", "unique_constraint", "proxy_lease_events")


@pytest.mark.parametrize("old_install", [
    "at head", "at 0010_lease_events", "not at all: an empty alembic_version"])
def test_an_install_recorded_in_alembic_version_is_moved_over_by_the_next_upgrade(fresh_database, old_install):
    database = fresh_database()
    env = {"DATABASE_URL": database.url}
    revision = {"at head": HEAD, "at 0010_lease_events": "0010_lease_events"}.get(old_install)
    if revision:
        database.upgrade(revision)
        database.run("DROP TABLE proxy_leases_alembic_version")
        database.run(OLD_VERSION_TABLE)
        database.run("INSERT INTO alembic_version VALUES (%s)", (revision,))
        # Before the move, current reads the old record where it is, and changes nothing.
        current = proxy_leases_cli("current", env=env)
        assert current.returncode == 0 and revision in current.stdout, current.stderr
        assert "the next upgrade moves it" in current.stderr
        assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None
    else:
        database.run(OLD_VERSION_TABLE)  # the old layout, empty: nothing to move, nothing of ours in it

    upgraded = proxy_leases_cli("upgrade", "--cron", "off", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    if revision:
        assert f"moved revision {revision} from alembic_version" in upgraded.stderr
        # The summary starts from the revision moved, not from "not installed", and names the move.
        moved = f"  revision: {HEAD}, unchanged" if revision == HEAD else f"  revision: {revision} -> {HEAD}"
        assert moved in upgraded.stderr.splitlines()
        assert f"  notice: proxy-leases: moved revision {revision} from alembic_version" in upgraded.stderr
        assert database.one("SELECT to_regclass('alembic_version')") is None
        assert ("Running upgrade" in upgraded.stderr) == (revision != HEAD)
    else:
        assert database.all("SELECT * FROM alembic_version") == []


@pytest.mark.parametrize("rows", [["3f1c0a2b9d4e"], ["3f1c0a2b9d4e", HEAD], ["0016_somebody_elses"]])
def test_an_alembic_version_that_is_not_only_ours_is_left_alone(fresh_database, rows):
    database = fresh_database()
    database.run(OLD_VERSION_TABLE)
    for row in rows:
        database.run("INSERT INTO alembic_version VALUES (%s)", (row,))
    upgraded = proxy_leases_cli("upgrade", "--cron", "off", env={"DATABASE_URL": database.url})
    assert upgraded.returncode == 0, upgraded.stderr
    assert sorted(fleet_row(database)) == sorted((row,) for row in rows)
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD


def test_the_fleets_alembic_version_is_never_locked_even_while_the_fleets_own_deploy_holds_it(incident_fleet):
    """The fleet's migrator is mid-deploy (its transaction holds alembic_version): proxy-leases goes on."""
    database = incident_fleet
    with database.connect(autocommit=False) as fleet_deploy:
        fleet_deploy.execute("SELECT * FROM alembic_version FOR UPDATE")  # as Alembic's UPDATE would
        fleet_deploy.execute("LOCK TABLE alembic_version IN SHARE ROW EXCLUSIVE MODE")
        installed = proxy_leases_cli("upgrade", "--cron", "off", "--lock-timeout", "1s",
                                     env={"DATABASE_URL": database.url})
        assert installed.returncode == 0, installed.stderr
        fleet_deploy.rollback()
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == HEAD
    assert fleet_row(database) == [(FLEET_REVISION,)]
