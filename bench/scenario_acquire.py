"""Scenario 2: proxies granted per second, by pgbench, against the naive ways and the machine's limit.

One cycle is two transactions: take a proxy, give it back. Six ways to do it, each with K pgbench
clients on a pool of the same size:

  acquire_release    acquire_proxy then release_proxy, at head (the lease API, audit trail included)
  naive_for_update   SELECT … LIMIT 1 FOR UPDATE (no SKIP LOCKED) then UPDATE, on today's tables
  naive_subselect    UPDATE … WHERE id = (SELECT … LIMIT 1), no row lock on the pick, on today's tables
  two_updates        the limit: the same two single-row writes on a row known in advance, today's tables
  two_updates_at_head  the same two writes at head: what the schema (triggers, audit, indexes) costs
                     any write, apart from the lease API's own work
  without_audit      acquire_release at head with the audit trail turned off (record_lease_events =
                     false): what the trail costs

No proxy_available notification is sent in these runs: a release announces a proxy only while fewer
than 16 others are free, and the pools here always have more.

After each run of the lease API the audit trail is read back: every grant must be followed by a
release of the same proxy before the next grant of it, and no token may be handed out twice.
The naive forms have no audit trail; after the timed runs each runs once more with 16 clients on a
copy of the pool with a trigger that counts takes of a proxy already in use (not timed).
"""

from __future__ import annotations

from bench.harness import LEGACY, Harness, check, insert_proxies

# way: (pgbench script, database)
WAYS = {
    "acquire_release": ("acquire_release", "head"),
    "naive_for_update": ("naive_for_update", "legacy"),
    "naive_subselect": ("naive_subselect", "legacy"),
    "two_updates": ("two_updates", "legacy"),
    "two_updates_at_head": ("two_updates", "head"),
    "without_audit": ("acquire_release", "without_audit"),
}
# Each proxy's events in order must alternate: granted, then released by its worker with the same
# token, then granted again. A grant of a proxy someone holds would show as released (taken_over)
# then granted, so any release but the worker's own, or with another token, counts as well.
AUDIT_CHECK = """
SELECT count(*) FILTER (WHERE event = 'granted'),
       count(*) FILTER (WHERE event = 'released'),
       count(*) FILTER (WHERE (event = 'granted' AND previous_event IS DISTINCT FROM 'released'
                                                 AND previous_event IS NOT NULL)
                           OR (event = 'released' AND (reason <> 'released_by_worker'
                                                       OR previous_event IS DISTINCT FROM 'granted'
                                                       OR lease_token IS DISTINCT FROM previous_token))
                           OR event NOT IN ('granted', 'released')),
       count(*) FILTER (WHERE event = 'granted') - count(DISTINCT lease_token) FILTER (WHERE event = 'granted')
  FROM (SELECT e.event, e.reason, e.lease_token,
               lag(e.event) OVER w AS previous_event, lag(e.lease_token) OVER w AS previous_token
          FROM proxy_lease_events e
         WHERE e.id > %s
        WINDOW w AS (PARTITION BY e.proxy_id ORDER BY e.id)) e
"""


def fill_pool(harness: Harness, dbname: str, proxies: int) -> None:
    with harness.connect(dbname) as conn:
        insert_proxies(conn, proxies)
        conn.execute("VACUUM ANALYZE proxies")


def last_event_id(harness: Harness, dbname: str) -> int:
    with harness.connect(dbname) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM proxy_lease_events").fetchone()[0]


def audit_check(harness: Harness, dbname: str, after_event: int, cycles: int) -> dict:
    """Reads the run's events back; raises if any proxy was granted twice or a token reused."""
    with harness.connect(dbname) as conn:
        grants, releases, out_of_order, reused_tokens = conn.execute(AUDIT_CHECK, (after_event,)).fetchone()
        held = conn.execute("SELECT count(*) FROM proxies WHERE is_in_use").fetchone()[0]
    check(out_of_order == 0 and reused_tokens == 0,
          f"{dbname}: {out_of_order} events out of the grant-release order, {reused_tokens} reused tokens")
    check(grants == releases >= cycles and held == 0,
          f"{dbname}: {grants} grants, {releases} releases, {cycles} cycles, {held} proxies left held")
    return {"grants": grants, "double_grants": out_of_order, "reused_tokens": reused_tokens}


def count_double_grants(harness: Harness, pool: int, script: str, clients: int, seconds: float) -> dict:
    """Runs ``script`` on a pool that records every take of a proxy some worker already holds."""
    dbname = f"acquire_double_grants_{pool}"
    harness.database(dbname, LEGACY)
    fill_pool(harness, dbname, pool)
    with harness.connect(dbname) as conn:
        conn.execute("CREATE TABLE double_grants (proxy_id bigint, holder text, taker text)")
        conn.execute("""
            CREATE FUNCTION record_double_grant() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO double_grants VALUES (NEW.id, OLD.worker_id, NEW.worker_id);
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER record_double_grant BEFORE UPDATE ON proxies FOR EACH ROW "
                     "WHEN (OLD.is_in_use AND NEW.is_in_use) EXECUTE FUNCTION record_double_grant()")
    result = harness.pgbench(dbname, script, clients, seconds)
    with harness.connect(dbname) as conn:
        doubles = conn.execute("SELECT count(*) FROM double_grants").fetchone()[0]
    harness.drop(dbname)
    return {"pool": pool, "way": script, "clients": clients, "cycles": result.cycles, "double_grants": doubles}


def run(harness: Harness) -> dict:
    pools = (100, 10_000)
    clients = (1, 4) if harness.quick else (1, 2, 4, 8, 16)
    seconds = 1 if harness.quick else 5
    databases = {}
    for pool in pools:
        for schema in ("head", "legacy", "without_audit"):
            databases[(schema, pool)] = f"acquire_{schema}_{pool}"
            harness.database(databases[(schema, pool)], LEGACY if schema == "legacy" else "head")
            fill_pool(harness, databases[(schema, pool)], pool)
        with harness.connect(databases[("without_audit", pool)]) as conn:
            conn.execute("UPDATE proxy_lease_settings SET record_lease_events = false")

    samples: dict[tuple[int, int, str], list[float]] = {}
    audits = []
    # Rounds outermost, so that a slow minute of the machine spreads over every cell.
    for round_number in range(harness.runs):
        for pool in pools:
            for k in clients:
                for way, (script, schema) in WAYS.items():
                    dbname = databases[(schema, pool)]
                    with harness.connect(dbname) as conn:
                        conn.execute("VACUUM proxies")
                    after = last_event_id(harness, dbname) if way == "acquire_release" else None
                    result = harness.pgbench(dbname, script, k, seconds)
                    samples.setdefault((pool, k, way), []).append(result.cycles_per_second)
                    if after is not None:
                        audits.append({"pool": pool, "clients": k, **audit_check(harness, dbname, after, result.cycles)})
        print(f"  acquisition: round {round_number + 1} of {harness.runs} done", flush=True)

    naive_checks = [count_double_grants(harness, pool, script, max(clients), seconds)
                    for pool in pools for script in ("naive_for_update", "naive_subselect")]
    cells = []
    for (pool, k, way), values in sorted(samples.items()):
        cells.append({"pool": pool, "clients": k, "way": way, "cycles_per_second": values})
    return {"cells": cells, "audits": audits, "naive_double_grants": naive_checks, "seconds": seconds,
            "runs": harness.runs}
