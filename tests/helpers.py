"""What the tests share: running Alembic as a user would, and talking to one database."""

from __future__ import annotations

import argparse
import json
from collections import Counter
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = ROOT / "alembic.ini"
# The newest revision: what `alembic upgrade head` ends at.
HEAD = "0018_wrong_call_help"
# How many revisions `upgrade head` runs on an empty database.
REVISION_COUNT = int(HEAD[:4])


def alembic(url: str, verb: str, *args: str, cron: str = "off", **x: str) -> None:
    """`alembic -x url=... -x cron=... <verb> <args>`, in this process."""
    x_args = [f"url={url}", f"cron={cron}", *(f"{k}={v}" for k, v in x.items())]
    config = Config(str(ALEMBIC_INI), cmd_opts=argparse.Namespace(x=x_args))
    config.attributes["configure_logger"] = False
    getattr(command, verb)(config, *args)


def alembic_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The alembic command line, from the repository root, exactly as the README says."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_LEASES_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120,
    )


def proxy_leases_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The `proxy-leases` command as the package installs it (proxy_leases.cli:main), in a process of its own."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_LEASES_") and k != "DATABASE_URL"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "import sys; from proxy_leases.cli import main; sys.exit(main())", *args],
        cwd="/", env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@dataclass
class Database:
    url: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url, **kwargs)

    def one(self, query: str, params: Any = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row is not None and len(row) == 1 else row

    def all(self, query: str, params: Any = None) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()

    def run(self, query: str, params: Any = None) -> int:
        with self.connect() as conn:
            return conn.execute(query, params).rowcount

    def upgrade(self, target: str = "head", **x: str) -> None:
        alembic(self.url, "upgrade", target, **x)

    def downgrade(self, target: str, **x: str) -> None:
        alembic(self.url, "downgrade", target, **x)


DEMO_DIR = ROOT / "demo"

POOL_FIGURES = """
SELECT count(*)                                             AS total,
       count(*) FILTER (WHERE is_in_use)                    AS in_use,
       count(*) FILTER (WHERE is_blocked)                   AS blocked,
       count(*) FILTER (WHERE NOT is_in_use AND NOT is_blocked) AS free
  FROM proxies
"""


def load_legacy_incident(database: Database) -> None:
    """The fleet's pre-upgrade schema holding the incident report's pool (see demo/)."""
    with database.connect() as conn:
        conn.execute((DEMO_DIR / "legacy_schema.sql").read_text())
        conn.execute((DEMO_DIR / "incident_state.sql").read_text())


def pool_figures(database: Database) -> tuple[int, int, int, int]:
    """(total, in use, blocked, free), as the incident report counts them."""
    return tuple(database.one(POOL_FIGURES))


def acquire(database: Database, worker: str, lease: str | None = None) -> tuple | None:
    """acquire_proxy(worker, lease): (proxy_id, address, lease_token, leased_until), or None."""
    return database.one("SELECT * FROM acquire_proxy(%s, %s)", (worker, lease))


def past_the_grace(database: Database) -> None:
    """Move every grant back past orphan_grace, instead of sleeping through it."""
    database.run("UPDATE proxies SET leased_at = leased_at - (SELECT orphan_grace FROM proxy_lease_settings)"
                 " - interval '1 second' WHERE is_in_use")


def container_of(worker_id: str | None) -> str | None:
    return None if worker_id is None else worker_id.split("_", 1)[0]


def sweep(database: Database) -> int:
    """release_stuck_proxies(), checked against what the status views said just before it ran.

    The views must predict exactly what the sweep frees (one definition of stuck), container by
    container, and each proxy freed must leave one released event with the reason stuck_proxies gave.
    """
    with database.connect() as conn:
        predicted = conn.execute("SELECT id, worker_id, reason FROM stuck_proxies ORDER BY id").fetchall()
        stuck = conn.execute("SELECT stuck FROM proxy_pool_status").fetchone()[0]
        by_container = dict(conn.execute(
            "SELECT container_id, proxies_stuck FROM proxy_pool_by_container WHERE proxies_stuck > 0").fetchall())
        mark = conn.execute("SELECT coalesce(max(id), 0) FROM proxy_lease_events").fetchone()[0]
        freed = conn.execute("SELECT release_stuck_proxies()").fetchone()[0]
        released = conn.execute("SELECT proxy_id, worker_id, reason FROM proxy_lease_events "
                                "WHERE id > %s AND event = 'released' ORDER BY proxy_id", (mark,)).fetchall()
    assert stuck == len(predicted) == freed
    assert by_container == dict(Counter(container_of(worker) for _, worker, _ in predicted))
    assert released == predicted
    return freed


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def executed_plans(database: Database, query: str) -> tuple[Any, list[dict]]:
    """What `query` returned, and the plan of every statement it ran, nested ones included (functions,
    triggers), as auto_explain logs them. EXPLAIN alone cannot see inside a function."""
    logged = []
    with database.connect() as conn:
        conn.add_notice_handler(lambda notice: logged.append(notice.message_primary))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_format = json",
                        "log_level = notice"):
            conn.execute(f"SET auto_explain.{setting}")
        result = conn.execute(query).fetchall()
    plans = [json.loads(message[message.index("{"):])["Plan"] for message in logged if '"Plan"' in message]
    return result, plans


def scans(plans: list[dict]) -> set[tuple[str, str | None, str | None]]:
    """(node type, table, index) of every node of the plans that reads a table or an index."""
    return {(node["Node Type"], node.get("Relation Name"), node.get("Index Name"))
            for plan in plans for node in plan_nodes(plan) if "Relation Name" in node or "Index Name" in node}


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_for_lock_wait(database: Database, like: str, timeout: float = 10.0) -> None:
    """Until a statement whose text is LIKE `like` waits for a lock (pg_stat_activity)."""
    deadline = time.monotonic() + timeout
    while not database.one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                           (like,)):
        assert time.monotonic() < deadline, f"nothing waited for a lock on a query like {like!r}"
        time.sleep(0.02)
