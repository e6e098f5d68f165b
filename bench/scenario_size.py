"""Scenario 5: what the migrations add to the fleet's tables, in bytes per proxy row and per index entry.

One database with 100,000 proxies and 1,000,000 tasks, measured at the baseline revision and again
after `alembic upgrade head`, each time after VACUUM FULL (so both are packed alike). Before the
second measure every proxy has been taken and given back once, so each row carries the columns
the lease fills in, and 10 % of the proxies are held by workers with a task in processing. The
audit trail is measured too: the events those takes and releases wrote.
"""

from __future__ import annotations

from bench.harness import LEGACY, Harness, check, insert_proxies, insert_task_history

FLEET_TABLES = ("proxies", "catalog_tasks", "object_tasks")
RELATIONS = """
SELECT c.relname, c.relkind, i.indrelid::regclass::text AS table_name,
       pg_relation_size(c.oid) AS bytes, pg_get_expr(i.indpred, i.indrelid) AS predicate
  FROM pg_class c
  LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE c.relnamespace = 'public'::regnamespace
   AND (c.relname = ANY (%(tables)s) OR i.indrelid::regclass::text = ANY (%(tables)s))
"""


def measure(harness: Harness, dbname: str, tables: tuple[str, ...]) -> dict:
    with harness.connect(dbname) as conn:
        conn.execute(f"VACUUM FULL {', '.join(tables)}")
        conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")
        relations = {}
        for name, kind, table, size, predicate in conn.execute(RELATIONS, {"tables": list(tables)}).fetchall():
            # An index holds one entry per row of its table that matches its predicate.
            entries = conn.execute(f"SELECT count(*) FROM {table or name} WHERE {predicate or 'true'}").fetchone()[0]
            relations[name] = {"kind": kind, "table": table, "bytes": size, "entries": entries}
        proxies = conn.execute("SELECT count(*), avg(pg_column_size(p.*)) FROM proxies p").fetchone()
    return {"relations": relations, "proxies": proxies[0], "proxy_row_bytes": float(proxies[1])}


def run(harness: Harness) -> dict:
    proxies = 10_000 if harness.quick else 100_000
    dbname = "size"
    harness.database(dbname, LEGACY)
    with harness.connect(dbname) as conn:
        insert_proxies(conn, proxies)
        insert_task_history(conn, 5 * proxies)
    before = measure(harness, dbname, FLEET_TABLES)

    harness.upgrade(dbname)
    with harness.connect(dbname) as conn:
        # Every proxy taken and given back once (the fleet's own UPDATEs: the triggers fill in the lease).
        conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'w' || id || '_1'")
        conn.execute("UPDATE proxies SET is_in_use = false, worker_id = NULL")
        conn.execute("UPDATE proxies SET is_in_use = true, worker_id = 'w' || id || '_1' WHERE id % 10 = 0")
        conn.execute("UPDATE catalog_tasks SET status = 'processing', worker_id = 'w' || id || '_1', "
                     "heartbeat_at = now() WHERE id IN (SELECT id FROM proxies WHERE id % 10 = 0)")
        events = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    after = measure(harness, dbname, FLEET_TABLES + ("proxy_lease_events",))
    check(after["proxies"] == before["proxies"] == proxies, "the pool changed size")
    check(events == 2 * proxies + proxies // 10, f"{events} events for {proxies} proxies")
    harness.drop(dbname)
    return {"proxies": proxies, "tasks": 10 * proxies, "events": events, "before": before, "after": after}
