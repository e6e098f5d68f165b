"""What only the tests share: checks and waits built on the harness (tools/harness.py), which holds
the server, the migrated databases and Alembic for the tests, bench/, soak/ and demo/ alike."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from sqlalchemy.engine import make_url

from tools.harness import Database, load_legacy_incident


CATALOG_QUERY = """
SELECT 'function ' || p.oid::regprocedure || ': ' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger ' || tgrelid::regclass || '.' || tgname || ': ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE NOT tgisinternal
UNION ALL
SELECT 'index ' || indexrelid::regclass || ': ' || pg_get_indexdef(indexrelid) || ' valid=' || indisvalid
  FROM pg_index WHERE indrelid::regclass::text IN ('proxies', 'catalog_tasks', 'object_tasks', 'proxy_lease_events')
UNION ALL
SELECT 'view ' || c.oid::regclass || ': ' || md5(pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || '.' || conname || ': ' || pg_get_constraintdef(oid) || ' valid=' || convalidated
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'column ' || attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod) || ' notnull=' || attnotnull
  FROM pg_attribute WHERE attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r')
   AND attnum > 0 AND NOT attisdropped
UNION ALL
SELECT 'rights ' || p.oid::regprocedure || ': '
       || array_to_string(ARRAY(SELECT x::text FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) x ORDER BY 1), ' ')
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'rights ' || c.oid::regclass || ': '
       || array_to_string(ARRAY(SELECT x::text FROM unnest(coalesce(c.relacl, acldefault('r', c.relowner))) x ORDER BY 1), ' ')
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')
UNION ALL
SELECT 'rights ' || attrelid::regclass || '.' || attname || ': ' || array_to_string(attacl, ' ')
  FROM pg_attribute WHERE attacl IS NOT NULL
   AND attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
UNION ALL
SELECT 'comment ' || objoid::regprocedure || ': ' || md5(description)
  FROM pg_description WHERE classoid = 'pg_proc'::regclass
   AND objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace)
ORDER BY 1
"""


def catalog(database: Database) -> list[str]:
    """What a database has installed, one line per definition, right and comment: two databases with
    equal catalogs have the same proxy-leases."""
    return [row[0] for row in database.all(CATALOG_QUERY)]


def acquire(database: Database, worker: str, lease: str | None = None) -> tuple | None:
    """acquire_proxy(worker, lease): (proxy_id, address, lease_token, leased_until), or None."""
    return database.one("SELECT * FROM acquire_proxy(%s, %s)", (worker, lease))


def past_the_grace(database: Database) -> None:
    """Move every grant back past orphan_grace, instead of sleeping through it."""
    database.run("UPDATE proxies SET leased_at = leased_at - (SELECT orphan_grace FROM proxy_lease_settings)"
                 " - interval '1 second' WHERE is_in_use")


def as_role(url: str, role: str, **query: str) -> str:
    """``url`` for another login role (no password: the test servers trust), with ``query`` parameters."""
    return make_url(url).set(username=role, password=None, query=query).render_as_string(hide_password=False)


def upgraded_incident(database: Database) -> Database:
    """The incident's pool, upgraded to head and moved past the grace: 16 proxies stuck, the sweep not yet run."""
    load_legacy_incident(database)
    database.upgrade()
    past_the_grace(database)
    return database


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
