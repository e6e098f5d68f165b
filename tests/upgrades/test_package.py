"""The package as a fleet's deploy installs it: a wheel built from the checkout, in a fresh venv elsewhere.

Only what the wheel holds is used: the venv has no access to the checkout (no PYTHONPATH, another
working directory), so a file missing from the package data fails here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_leases import __version__
from tools.harness import HEAD, REVISION_COUNT, ROOT


def run(argv: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV") and not k.startswith("PROXY_LEASES_")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `proxy-leases` command of a fresh venv where only the built wheel (and its dependencies) is."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "proxy_leases", source / "proxy_leases",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source], cwd=work)
    assert built.returncode == 0, built.stderr
    [wheel] = (work / "dist").glob("*.whl")
    assert wheel.name == f"proxy_leases-{__version__}-py3-none-any.whl"

    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", venv], cwd=work)
    assert made.returncode == 0, made.stderr
    done = run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], cwd=work)
    assert done.returncode == 0, done.stderr
    where = run([venv / "bin" / "python", "-c", "import proxy_leases; print(proxy_leases.__file__)"], cwd=work)
    assert where.stdout.startswith(str(venv)), where.stdout
    return venv / "bin" / "proxy-leases"


def command(installed: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env_args = ["env", f"DATABASE_URL={url}"] if url else []
    return run([*env_args, installed, *args], cwd=installed.parent.parent.parent)


def test_the_installed_command_prints_its_version_and_head(installed):
    shown = command(installed, "--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"proxy-leases {__version__} (head revision {HEAD})"


def test_the_installed_command_installs_reports_and_removes_proxy_leases(installed, fresh_database):
    database = fresh_database()
    upgraded = command(installed, "upgrade", "--cron", "off", url=database.url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stderr.count("Running upgrade") == REVISION_COUNT
    current = command(installed, "current", url=database.url)
    assert current.returncode == 0 and current.stdout.strip() == f"{HEAD} (head)", current.stderr
    assert database.one("SELECT count(*) FROM acquire_proxy('c1_1')") == 0  # installed and callable: no proxies yet
    history = command(installed, "history")
    assert history.returncode == 0 and f"-> {HEAD} (head)" in history.stdout
    script = command(installed, "sql", url=database.url)
    assert script.returncode == 0 and "CREATE OR REPLACE FUNCTION public.acquire_proxy" in script.stdout
    removed = command(installed, "downgrade", "base", url=database.url)
    assert removed.returncode == 0, removed.stderr
    assert database.one("SELECT to_regclass('proxies')") is None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.mark.parametrize("case", ["no database", "not a URL", "host unreachable", "authentication refused",
                                  "no such revision", "database ahead of the package", "not a duration"])
def test_expected_failures_are_one_clear_line_and_exit_1(installed, fresh_database, pg_server, case):
    database = fresh_database()
    args, url = ["upgrade", "--cron", "off"], database.url
    if case == "no database":
        url = None
        expected = "proxy-leases: no database given. Set DATABASE_URL="
    elif case == "not a URL":
        url = "postgresql://postgres@127.0.0.1:notaport/fleet"
        expected = "proxy-leases: the database URL is not a URL: expected postgresql://"
    elif case == "not a duration":
        args = ["upgrade", "--lock-timeout", "5x"]
        expected = "proxy-leases: lock_timeout='5x': expected a number and a unit (ms, s, min, h, d)"
    elif case == "host unreachable":
        port = closed_port()
        url = f"postgresql://postgres@127.0.0.1:{port}/fleet"
        expected = f"proxy-leases: cannot connect to PostgreSQL at 127.0.0.1:{port} (database fleet, user postgres): "
    elif case == "authentication refused":
        database.run("CREATE ROLE deploy_without_login NOLOGIN")
        url = database.url.replace("postgresql://postgres@", "postgresql://deploy_without_login@")
        expected = (f"proxy-leases: cannot connect to PostgreSQL at 127.0.0.1:{pg_server.port} (database "
                    f'{database.name}, user deploy_without_login): ')
    elif case == "no such revision":
        args = ["upgrade", "0099_nope"]
        expected = "proxy-leases: Can't locate revision identified by '0099_nope' (this proxy-leases"
    else:
        assert command(installed, "upgrade", "--cron", "off", url=url).returncode == 0
        database.run("UPDATE proxy_leases_alembic_version SET version_num = '0099_from_the_future'")
        expected = ("proxy-leases: the database is at revision '0099_from_the_future', which this proxy-leases "
                    f"{__version__} (head {HEAD}) does not know")

    failed = command(installed, *args, url=url)
    assert failed.returncode == 1, failed.stdout
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), failed.stderr
    if case == "authentication refused":
        assert 'role "deploy_without_login" is not permitted to log in' in lines[0]  # the server's words
    if case == "database ahead of the package":
        assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0099_from_the_future"


def test_the_database_refusing_a_step_is_its_sqlstate_message_and_hint(installed, fresh_database):
    database = fresh_database()
    database.run("CREATE TABLE proxies (id serial PRIMARY KEY, is_in_use boolean, is_blocked boolean)")
    failed = command(installed, "upgrade", "--cron", "off", url=database.url)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert lines[0].startswith("Running upgrade  -> 0001_fleet_schema, Baseline")
    assert lines[1] == ("proxy-leases: the database refused (SQLSTATE 42703): table public.proxies lacks the "
                        "contract column(s) worker_id")
    assert lines[2].startswith("HINT: proxy-leases adopts an existing table only if it has every contract column")
    assert lines[3].startswith("The step that failed was rolled back")
    assert database.one("SELECT to_regclass('proxy_leases_alembic_version')") is None


def test_a_url_for_another_driver_is_run_on_psycopg_and_current_says_what_is_missing(installed, fresh_database):
    database = fresh_database()
    url = database.url.replace("postgresql://", "postgresql+psycopg2://")
    current = command(installed, "current", url=url)
    assert current.returncode == 0 and current.stdout == ""
    assert f"proxy-leases is not installed in this database (this package's head is {HEAD})" in current.stderr
    stamped = command(installed, "stamp", "0003_lease", url=url)
    assert stamped.returncode == 0, stamped.stderr
    assert database.one("SELECT version_num FROM proxy_leases_alembic_version") == "0003_lease"
    script = command(installed, "sql", "--downgrade", f"{HEAD}:base", url=url)
    assert script.returncode == 0 and "DROP FUNCTION public.acquire_proxy(text, interval);" in script.stdout


RUNTIME = {"proxy-leases", "alembic", "mako", "markupsafe", "sqlalchemy", "greenlet", "typing-extensions",
           "psycopg", "psycopg-binary", "tzdata", "pip", "setuptools"}


def test_setup_for_the_migrations_only_installs_the_package_and_its_three_dependencies(tmp_path):
    """scripts/setup --migrations-only: what an operator needs to apply the migrations, and nothing of the
    tests', benchmarks' or demo's (pytest, matplotlib, asyncpg)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    shutil.copytree(ROOT / "proxy_leases", checkout / "proxy_leases", ignore=shutil.ignore_patterns("__pycache__"))
    done = run([checkout / "scripts" / "setup", "--migrations-only"], cwd=checkout)
    assert done.returncode == 0, done.stderr
    listed = run([checkout / ".venv" / "bin" / "python", "-m", "pip", "list", "--format=freeze"], cwd=checkout)
    packages = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert {"proxy-leases", "alembic", "sqlalchemy", "psycopg"} <= packages <= RUNTIME, packages
    shown = run([checkout / ".venv" / "bin" / "proxy-leases", "--version"], cwd=tmp_path)
    assert shown.stdout.strip() == f"proxy-leases {__version__} (head revision {HEAD})"
