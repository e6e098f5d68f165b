"""What watching the pool costs at 1,000,000 proxies and 1,000,000 tasks: status views, audit trail, retention.

    .venv/bin/python bench/observability_at_scale.py [--quick] [--proxies N] [--tasks N] [--runs N] ...

A throwaway PostgreSQL migrated to head, then the fleet's data: --proxies proxies, --held of them
held by --containers containers (taken with the fleet's legacy UPDATE, so the triggers stamp leases
and log grants), the proxies of the last --dead-containers containers orphaned (no task in
processing), --expired more whose lease ran out, --blocked-held blocked while held, and about 1 %
of the free ones blocked (half in a cooldown); --tasks tasks across catalog_tasks and object_tasks,
one in processing per live holder, the rest done, failed or pending (half with NULL worker ids).
Every grant is moved back past orphan_grace, so the stuck proxies are stuck now. Then:

  1. SELECT * FROM proxy_pool_status and proxy_pool_by_container: median and p95 of --runs calls
     (the status view also without parallel workers, and its stuck_proxies part alone), the EXPLAIN
     ANALYZE, and every statement they run, nested ones included (auto_explain): the task tables
     must be read only through *_processing_worker_idx (never a Seq Scan), and the by-container view
     must not scan proxies sequentially. The figures must match the load.
     Then SELECT * FROM proxy_leases_health, the same way (its free-pool figure must match the load).
  2. --grants acquire_proxy + release_proxy pairs in a server-side loop (a DO block committing every
     1,000): bytes per event (pg_total_relation_size('proxy_lease_events') growth / events added,
     and by relation).
  3. The audit trail's cost per pair, server side: --ab-pairs pairs with the audit triggers off, on,
     off, on (ALTER TABLE proxies DISABLE/ENABLE TRIGGER record_lease_events*), each after a VACUUM.
  4. --events ordinary events and --reclaims reclaims inserted directly over the last 29 days:
     SELECT * FROM proxy_recovery_by_hour, median and p95; it must read proxy_lease_events only
     through proxy_lease_events_reclaims_idx.
     Then SELECT * FROM proxy_lease_event_totals (the exporter's counters) over the same events.
  5. --old-events events older than event_retention inserted directly: prune_lease_events() called
     until it returns 0, each call timed (default batch, 50,000), its plan (auto_explain, a
     rolled-back call) must not read proxy_lease_events sequentially. Then the steady state every
     maintenance run meets once the backlog is gone: after a VACUUM, --steady-old events past
     retention (fewer than a batch) among the younger ones; the pick of the oldest must be bounded by
     the retention cutoff (an Index Cond on occurred_at), not read every younger event.

The load average is printed at the start and the end: other work on the machine moves the figures.

Exits 1 when a plan check or a count check fails. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.harness import SERVER_SETTINGS, Harness  # noqa: E402

TASK_TABLES = ("catalog_tasks", "object_tasks")
AUDIT_TRIGGERS = ("record_lease_events", "record_lease_events_on_insert", "record_lease_events_on_delete")
RECLAIM_REASONS = ("lease_expired", "orphaned", "inconsistent", "container_restart", "requeued", "reassigned",
                   "taken_over")
CONTAINER = "substr(md5('container' || {c}), 1, 8)"   # a container id, e.g. 8b4f59aa, from its number

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  check {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


# ---------------------------------------------------------------------------------------------- load

def load_fleet(conn: psycopg.Connection, args: argparse.Namespace) -> dict[str, int]:
    """The pool and the task history; returns what proxy_pool_status must say."""
    n, held, containers = args.proxies, args.held, args.containers
    step = n // held
    conn.execute("INSERT INTO proxies (address) SELECT 'http://p' || n || ':3128' FROM generate_series(1, %s) n",
                 (n,))
    # Held proxies spread over the table: the k-th (1-based) is worker (k-1) / C + 1 of container (k-1) % C.
    container_expr = CONTAINER.format(c="((id / %(step)s - 1) %% %(c)s)")
    conn.execute(f"UPDATE proxies SET is_in_use = true, "
                 f"    worker_id = {container_expr} || '_' || ((id / %(step)s - 1) / %(c)s + 1) "
                 f" WHERE id %% %(step)s = 0 AND id / %(step)s <= %(held)s",
                 {"step": step, "c": containers, "held": held})
    dead = [conn.execute(f"SELECT {CONTAINER.format(c='%s::int')}", (c,)).fetchone()[0]
            for c in range(containers - args.dead_containers, containers)]
    live = "is_in_use AND split_part(worker_id, '_', 1) <> ALL(%(dead)s)"

    # History: done, failed, pending; half by workers of the same containers, half with NULL worker ids.
    processing = conn.execute(f"SELECT count(*) FROM proxies WHERE {live}", {"dead": dead}).fetchone()[0]
    history = max(0, args.tasks - processing)
    for table, rows in zip(TASK_TABLES, (history - history // 2, history // 2)):
        conn.execute(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
                     "SELECT (ARRAY['done','failed','pending'])[1 + n %% 3], "
                     f"       CASE WHEN n %% 2 = 0 THEN {CONTAINER.format(c='(n %% %(c)s)')} || '_' || (n %% 500) END, "
                     "       now() - interval '1 day' - n * interval '1 second' "
                     "  FROM generate_series(1, %(rows)s) n", {"rows": rows, "c": containers})
    # One task in processing per live holder, alternating between the two tables.
    for table, parity in zip(TASK_TABLES, (0, 1)):
        conn.execute(f"INSERT INTO {table} (status, worker_id, heartbeat_at) "
                     f"SELECT 'processing', worker_id, now() FROM proxies "
                     f" WHERE {live} AND (id / %(step)s) %% 2 = %(parity)s",
                     {"dead": dead, "parity": parity, "step": step})

    # As if orphan_grace had passed since every grant; some live leases ran out; some held got blocked.
    conn.execute("UPDATE proxies SET leased_at = leased_at - (SELECT orphan_grace FROM proxy_lease_settings) "
                 "- interval '1 second' WHERE is_in_use")
    conn.execute(f"UPDATE proxies SET leased_until = now() - interval '1 second' "
                 f" WHERE id IN (SELECT id FROM proxies WHERE {live} ORDER BY id LIMIT %(expired)s)",
                 {"dead": dead, "expired": args.expired})
    conn.execute(f"UPDATE proxies SET is_blocked = true, blocked_reason = 'banned by target' "
                 f" WHERE id IN (SELECT id FROM proxies WHERE {live} AND leased_until > now() "
                 f"               ORDER BY id DESC LIMIT %(blocked_held)s)",
                 {"dead": dead, "blocked_held": args.blocked_held})
    blocked_every = 100
    conn.execute("UPDATE proxies SET is_blocked = true, blocked_reason = 'banned by target', "
                 "       blocked_until = CASE WHEN id %% 2 = 1 THEN now() + interval '1 hour' END "
                 " WHERE NOT is_in_use AND id %% %s = 1", (blocked_every,))
    blocked_free = conn.execute("SELECT count(*) FROM proxies WHERE NOT is_in_use AND is_blocked").fetchone()[0]
    for table in ("proxies", *TASK_TABLES, "proxy_lease_events"):
        conn.execute(f"VACUUM ANALYZE {table}")
    stuck = held * args.dead_containers // containers + args.expired
    return {"total": n, "in_use": held, "blocked": blocked_free, "free": n - held - blocked_free, "stuck": stuck,
            "processing": processing}


# ------------------------------------------------------------------------------------------- helpers

def timed(conn: psycopg.Connection, query: str, runs: int) -> list[float]:
    """Milliseconds per call (autocommit, rows fetched), after one warm-up call."""
    conn.execute(query).fetchall()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query).fetchall()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def nested_plans(conn: psycopg.Connection, query: str, rollback: bool = False, analyze: bool = False) -> list[dict]:
    """The plan of every statement `query` runs, nested ones included (functions, triggers), as
    auto_explain logs them: EXPLAIN alone cannot see inside a function."""
    logged: list[str] = []
    # A session of its own: auto_explain stays out of the sessions that are timed.
    with psycopg.connect(conn.info.dsn, autocommit=True) as own:
        own.add_notice_handler(lambda notice: logged.append(notice.message_primary))
        own.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_format = json",
                        "log_level = notice", *(("log_analyze = on", "log_buffers = on") if analyze else ())):
            own.execute(f"SET auto_explain.{setting}")
        if rollback:
            with own.transaction(force_rollback=True):
                own.execute(query).fetchall()
        else:
            own.execute(query).fetchall()
    return [json.loads(message[message.index("{"):])["Plan"] for message in logged if '"Plan"' in message]


def scan_counts(plans: list[dict]) -> collections.Counter:
    """(node type, table, index) -> how many times it appears in the plans, for nodes that read a relation."""
    return collections.Counter(
        (node["Node Type"], node.get("Relation Name"), node.get("Index Name"))
        for plan in plans for node in plan_nodes(plan) if "Relation Name" in node or "Index Name" in node)


def print_scans(counts: collections.Counter, plans: int) -> None:
    print(f"  every statement it ran ({plans} plans, auto_explain, nested included); nodes that read a relation:")
    for (node_type, relation, index), count in sorted(counts.items(), key=lambda item: (str(item[0][1]), item[0])):
        where = " ".join(part for part in (f"on {relation}" if relation else "", f"using {index}" if index else "")
                         if part)
        print(f"    {count:>6} x {node_type} {where}")


def explain(conn: psycopg.Connection, query: str) -> None:
    print("  EXPLAIN (ANALYZE, BUFFERS, COSTS OFF):")
    for (line,) in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {query}"):
        print(f"    {line}")


def task_tables_only_through_partial_indexes(counts: collections.Counter, label: str) -> None:
    seq = {relation for (node_type, relation, _) in counts if node_type == "Seq Scan"}
    check(not seq & set(TASK_TABLES), f"{label}: no Seq Scan on catalog_tasks/object_tasks (seq scans: "
                                      f"{', '.join(sorted(seq)) or 'none'})")
    task_indexes = {index for (_, _, index) in counts if index and index.startswith(TASK_TABLES)}
    wanted = {f"{table}_processing_worker_idx" for table in TASK_TABLES}
    check(task_indexes == wanted, f"{label}: the task tables are read through exactly {sorted(wanted)} "
                                  f"(used: {sorted(task_indexes)})")


def relation_sizes(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT 'heap (with TOAST, FSM, VM)', pg_table_size('proxy_lease_events') "
        "UNION ALL SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        " WHERE i.indrelid = 'proxy_lease_events'::regclass "
        "UNION ALL SELECT 'total', pg_total_relation_size('proxy_lease_events')").fetchall()
    return dict(rows)


def pairs_loop(conn: psycopg.Connection, pairs: int, prefix: str) -> float:
    """`pairs` acquire_proxy + release_proxy pairs in one DO block, a COMMIT every 1,000; seconds taken."""
    started = time.perf_counter()
    conn.execute(f"""
        DO $pairs$
        DECLARE
            g record;
        BEGIN
            FOR i IN 1..{int(pairs)} LOOP
                SELECT * INTO g FROM public.acquire_proxy('{prefix}_' || (i % 50));
                IF g.proxy_id IS NULL OR NOT public.release_proxy(g.proxy_id, g.lease_token) THEN
                    RAISE EXCEPTION 'pair % failed', i;
                END IF;
                IF i % 1000 = 0 THEN
                    COMMIT;
                END IF;
            END LOOP;
        END
        $pairs$""")
    return time.perf_counter() - started


def set_audit(conn: psycopg.Connection, on: bool) -> None:
    for trigger in AUDIT_TRIGGERS:
        conn.execute(f"ALTER TABLE proxies {'ENABLE' if on else 'DISABLE'} TRIGGER {trigger}")


# --------------------------------------------------------------------------------------------- parts

def status_views(conn: psycopg.Connection, expected: dict[str, int], runs: int, summary: list) -> None:
    for view in ("proxy_pool_status", "proxy_pool_by_container"):
        query = f"SELECT * FROM {view}"
        print(f"\n== {query}")
        took = timed(conn, query, runs)
        print(f"  median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms, min {min(took):.2f} ms "
              f"({runs} calls)")
        summary.append((query, f"median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms"))
        if view == "proxy_pool_status":
            conn.execute("SET max_parallel_workers_per_gather = 0")
            serial = timed(conn, query, runs)
            conn.execute("RESET max_parallel_workers_per_gather")
            print(f"  without parallel workers (max_parallel_workers_per_gather = 0): "
                  f"median {statistics.median(serial):.2f} ms, p95 {p95(serial):.2f} ms")
            summary.append((f"{query}, max_parallel_workers_per_gather = 0",
                            f"median {statistics.median(serial):.2f} ms, p95 {p95(serial):.2f} ms"))
            stuck = timed(conn, "SELECT count(*) FROM stuck_proxies", runs)
            print(f"  of which SELECT count(*) FROM stuck_proxies alone: median {statistics.median(stuck):.2f} ms")
            summary.append(("SELECT count(*) FROM stuck_proxies (part of the above)",
                            f"median {statistics.median(stuck):.2f} ms"))
        explain(conn, query)
        plans = nested_plans(conn, query)
        counts = scan_counts(plans)
        print_scans(counts, len(plans))
        task_tables_only_through_partial_indexes(counts, view)
        indexes = {index for (_, _, index) in counts if index}
        check("proxies_held_worker_idx" in indexes, f"{view}: the held proxies are read through proxies_held_worker_idx")
        if view == "proxy_pool_by_container":
            seq = {relation for (node_type, relation, _) in counts if node_type == "Seq Scan"}
            check("proxies" not in seq, f"{view}: no Seq Scan on proxies")
            rows = conn.execute("SELECT count(*), sum(proxies_held), sum(tasks_processing), sum(proxies_stuck) "
                                "FROM proxy_pool_by_container").fetchone()
            print(f"  {rows[0]} containers, {rows[1]} proxies held, {rows[2]} tasks processing, {rows[3]} stuck")
            check(tuple(rows[1:]) == (expected["in_use"], expected["processing"], expected["stuck"]),
                  f"{view}: sums (held, processing, stuck) = "
                  f"{(expected['in_use'], expected['processing'], expected['stuck'])}")
        else:
            row = conn.execute("SELECT total, in_use, blocked, free, stuck FROM proxy_pool_status").fetchone()
            want = tuple(expected[k] for k in ("total", "in_use", "blocked", "free", "stuck"))
            print(f"  (total, in_use, blocked, free, stuck) = {row}")
            check(tuple(row) == want, f"{view}: figures = {want}")


def health_view(conn: psycopg.Connection, expected: dict[str, int], runs: int, summary: list) -> None:
    """proxy_leases_health, as `proxy-leases check` and a probe read it."""
    query = "SELECT * FROM proxy_leases_health"
    print(f"\n== {query}")
    took = timed(conn, query, runs)
    print(f"  median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms, min {min(took):.2f} ms ({runs} calls)")
    summary.append((query, f"median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms"))
    explain(conn, query)
    for name, ok, value, threshold in conn.execute("SELECT name, ok, value, threshold FROM proxy_leases_health"):
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {value} ({threshold})")
    free = conn.execute("SELECT value FROM proxy_leases_health WHERE name = 'free_pool_above_floor'").fetchone()[0]
    check(free == f"{expected['free']} free of {expected['total']}", f"proxy_leases_health: {free!r} matches the load")


def event_size_and_trigger_cost(conn: psycopg.Connection, pairs: int, summary: list) -> None:
    print(f"\n== {pairs:,} acquire_proxy + release_proxy pairs, server-side (DO block, COMMIT every 1,000)")
    rows_before = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    sizes_before = relation_sizes(conn)
    on_1 = pairs_loop(conn, pairs, "sizer")
    rows_after = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    sizes_after = relation_sizes(conn)
    added = rows_after - rows_before
    check(added == 2 * pairs, f"{pairs:,} pairs appended {added:,} events (2 per pair)")
    print(f"  proxy_lease_events: {rows_before:,} -> {rows_after:,} rows; growth per event added, by relation:")
    for name in sizes_after:
        grew = sizes_after[name] - sizes_before[name]
        print(f"    {name:<36} {grew / max(added, 1):7.1f} B/event   ({sizes_after[name] / 2**20:8.1f} MiB now)")
    per_event = (sizes_after["total"] - sizes_before["total"]) / max(added, 1)
    overall = sizes_after["total"] / max(rows_after, 1)
    print(f"  pg_total_relation_size / rows, whole table: {overall:.1f} B/event")
    summary.append(("bytes per event (total relation growth / events added)",
                    f"{per_event:.0f} B ({overall:.0f} B whole table / rows)"))

    print(f"  time for those {pairs:,} pairs: {on_1 / pairs * 1e6:.0f} us per pair (audit on, no VACUUM before)")


def audit_ab(conn: psycopg.Connection, pairs: int, summary: list) -> None:
    """Server-side acquire+release pairs with the audit triggers off and on, alternating, each arm after a
    VACUUM of proxies and proxy_lease_events: released proxies leave dead entries at the head of
    proxies_free_rotation_idx, so without it every arm would be slower than the one before."""
    print(f"\n== audit triggers off / on, {pairs:,} server-side acquire+release pairs per arm "
          "(VACUUM before each arm)")
    per_pair: dict[bool, list[float]] = {False: [], True: []}
    try:
        for on in (False, True, False, True):
            conn.execute("VACUUM proxies")
            conn.execute("VACUUM proxy_lease_events")
            set_audit(conn, on)
            events_before = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
            seconds = pairs_loop(conn, pairs, "ab")
            added = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0] - events_before
            check(added == (2 * pairs if on else 0), f"audit {'on' if on else 'off'}: {added:,} events appended")
            per_pair[on].append(seconds / pairs * 1e6)
            print(f"  audit {'on ' if on else 'off'}: {seconds / pairs * 1e6:6.1f} us per pair "
                  f"({pairs / seconds:,.0f} pairs/s)")
    finally:
        set_audit(conn, True)
    on_us, off_us = statistics.mean(per_pair[True]), statistics.mean(per_pair[False])
    print(f"  mean: audit on {on_us:.1f} us, off {off_us:.1f} us per pair: the trail adds {on_us - off_us:.1f} us "
          f"({on_us / off_us - 1:+.0%})")
    summary.append(("server-side acquire+release pair, audit on / off",
                    f"{on_us:.0f} us / {off_us:.0f} us ({on_us / off_us - 1:+.0%}, {on_us - off_us:.0f} us per pair)"))


def recovery_by_hour(conn: psycopg.Connection, events: int, reclaims: int, runs: int, summary: list) -> None:
    print(f"\n== proxy_recovery_by_hour over {events:,} ordinary events and {reclaims:,} reclaims (last 29 days)")
    started = time.perf_counter()
    conn.execute("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason, worker_id, lease_token, "
                 "                                leased_at, renewed_at, leased_until) "
                 "SELECT t, 1 + n %% 100000, e, r, 'c' || (n %% 100) || '_' || (n %% 20), n, t, t, "
                 "       t + interval '5 minutes' "
                 "  FROM generate_series(1, %(events)s) n, "
                 "       LATERAL (SELECT now() - interval '29 days' * n / %(events)s AS t, "
                 "                       CASE WHEN n %% 2 = 0 THEN 'granted' ELSE 'released' END AS e, "
                 "                       CASE WHEN n %% 2 = 0 THEN 'acquired' ELSE 'released_by_worker' END AS r) x",
                 {"events": events})
    conn.execute("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason, worker_id, lease_token, "
                 "                                leased_at, renewed_at, leased_until) "
                 "SELECT t, 1 + n %% 100000, 'released', (%(reasons)s::text[])[1 + n %% 7], "
                 "       'dead' || (n %% 10) || '_' || n, n, t - interval '10 minutes', t - held, "
                 "       t - held + interval '5 minutes' "
                 "  FROM generate_series(1, %(reclaims)s) n, "
                 "       LATERAL (SELECT now() - interval '29 days' * n / %(reclaims)s AS t, "
                 "                       (30 + n %% 330) * interval '1 second' AS held) x",
                 {"reclaims": reclaims, "reasons": list(RECLAIM_REASONS)})
    conn.execute("VACUUM ANALYZE proxy_lease_events")
    total = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    print(f"  inserted and VACUUM ANALYZEd in {time.perf_counter() - started:.1f} s; "
          f"proxy_lease_events now {total:,} rows")
    query = "SELECT * FROM proxy_recovery_by_hour"
    took = timed(conn, query, runs)
    print(f"  median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms, min {min(took):.2f} ms ({runs} calls)")
    summary.append((f"{query} ({reclaims:,} reclaims among {total:,} events)",
                    f"median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms"))
    hours, reclaimed = conn.execute("SELECT count(*), sum(reclaimed) FROM proxy_recovery_by_hour").fetchone()
    print(f"  {hours} hours, {reclaimed:,} reclaims")
    check(reclaimed == reclaims, f"proxy_recovery_by_hour counts the {reclaims:,} reclaims")
    explain(conn, query)
    counts = scan_counts(nested_plans(conn, query))
    seq = {relation for (node_type, relation, _) in counts if node_type == "Seq Scan"}
    check("proxy_lease_events" not in seq, "proxy_recovery_by_hour: no Seq Scan on proxy_lease_events")
    indexes = {index for (_, _, index) in counts if index}
    check(indexes == {"proxy_lease_events_reclaims_idx"},
          f"proxy_recovery_by_hour: reads only proxy_lease_events_reclaims_idx (used: {sorted(indexes)})")
    query = "SELECT * FROM proxy_lease_event_totals"
    took = timed(conn, query, runs)
    print(f"\n== {query} over the same {total:,} events\n  median {statistics.median(took):.2f} ms, "
          f"p95 {p95(took):.2f} ms, min {min(took):.2f} ms ({runs} calls)")
    summary.append((f"{query} ({total:,} events)", f"median {statistics.median(took):.2f} ms, p95 {p95(took):.2f} ms"))
    counted = conn.execute("SELECT sum(events) FROM proxy_lease_event_totals").fetchone()[0]
    check(counted == total, f"proxy_lease_event_totals counts the {total:,} events")


def pick_scans(plans: list[dict]) -> list[dict]:
    """The nodes of prune_lease_events' plans that pick the oldest events: every read of proxy_lease_events
    but the DELETE itself and its lookup by primary key."""
    return [node for plan in plans for node in plan_nodes(plan)
            if node.get("Relation Name") == "proxy_lease_events" and node["Node Type"] != "ModifyTable"
            and node.get("Index Name") != "proxy_lease_events_pkey"]


def describe_pick(node: dict, indent: str) -> None:
    using = f" using {node['Index Name']}" if node.get("Index Name") else ""
    actual = ""
    if "Actual Rows" in node:
        actual = (f": actual rows {node['Actual Rows']:,}, Rows Removed by Filter "
                  f"{node.get('Rows Removed by Filter', 0):,}, shared hit {node.get('Shared Hit Blocks', 0):,} "
                  f"read {node.get('Shared Read Blocks', 0):,} blocks, {node['Actual Total Time']:.1f} ms")
    print(f"{indent}{node['Node Type']} on proxy_lease_events{using}{actual}")
    print(f"{indent}  Index Cond: {node.get('Index Cond', '(none)')}")
    print(f"{indent}  Filter: {node.get('Filter', '(none)')}")


def bounded_pick(plans: list[dict]) -> bool:
    """The retention cutoff bounds the pick: an index scan whose Index Cond has occurred_at."""
    picks = pick_scans(plans)
    return bool(picks) and all(
        node["Node Type"] != "Seq Scan"
        and "occurred_at" in node.get("Index Cond", node.get("Recheck Cond", ""))
        for node in picks)


def steady_state(conn: psycopg.Connection, steady: int, summary: list) -> None:
    """The call every maintenance run makes once the backlog is gone: fewer old events than a batch."""
    conn.execute("VACUUM ANALYZE proxy_lease_events")
    younger = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    conn.execute("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason) "
                 "SELECT now() - (SELECT event_retention FROM proxy_lease_settings) - n * interval '10 ms', n, "
                 "       'granted', 'acquired' FROM generate_series(1, %s) n", (steady,))
    print(f"\n  steady state: {steady:,} events past retention among {younger:,} younger ones, after VACUUM "
          "(what each maintenance run meets once a backlog is gone)")
    plans = nested_plans(conn, "SELECT prune_lease_events()", rollback=True, analyze=True)
    print("    its pick of the oldest events (auto_explain, log_analyze, a rolled-back call):")
    for node in pick_scans(plans):
        describe_pick(node, "      ")
    check(bounded_pick(plans),
          "prune_lease_events, steady state: the retention cutoff bounds the pick (an Index Cond on occurred_at), "
          "so a call reads the events it deletes, not every younger one")
    started = time.perf_counter()
    pruned = conn.execute("SELECT prune_lease_events()").fetchone()[0]
    some = (time.perf_counter() - started) * 1000
    empty = timed(conn, "SELECT prune_lease_events()", 5)
    print(f"    prune_lease_events() pruning {pruned:,}: {some:.1f} ms; then with nothing to prune: "
          f"median {statistics.median(empty):.1f} ms ({younger:,} younger events)")
    check(pruned == steady, f"steady state: pruned the {steady:,} old events")
    summary.append((f"prune_lease_events(), steady state: {steady:,} old among {younger:,}", f"{some:.1f} ms"))
    summary.append((f"prune_lease_events(), steady state: nothing to prune among {younger:,}",
                    f"median {statistics.median(empty):.1f} ms"))


def prune(conn: psycopg.Connection, old: int, steady: int, summary: list) -> None:
    print(f"\n== prune_lease_events() over {old:,} events older than event_retention")
    retention, retention_text = conn.execute(
        "SELECT event_retention, event_retention::text FROM proxy_lease_settings").fetchone()
    started = time.perf_counter()
    conn.execute("INSERT INTO proxy_lease_events (occurred_at, proxy_id, event, reason, worker_id, lease_token, "
                 "                                leased_at, renewed_at, leased_until) "
                 "SELECT t, 1 + n %% 100000, e, r, 'c' || (n %% 100) || '_' || (n %% 20), n, t, t, "
                 "       t + interval '5 minutes' "
                 "  FROM generate_series(1, %(old)s) n, "
                 "       LATERAL (SELECT now() - %(retention)s - interval '1 hour' - n * interval '1 second' AS t, "
                 "                       CASE WHEN n %% 2 = 0 THEN 'granted' ELSE 'released' END AS e, "
                 "                       CASE WHEN n %% 2 = 0 THEN 'acquired' ELSE 'released_by_worker' END AS r) x",
                 {"old": old, "retention": retention})
    conn.execute("VACUUM ANALYZE proxy_lease_events")
    total = conn.execute("SELECT count(*) FROM proxy_lease_events").fetchone()[0]
    print(f"  inserted and VACUUM ANALYZEd in {time.perf_counter() - started:.1f} s; "
          f"proxy_lease_events now {total:,} rows, {old:,} older than {retention_text}")

    plans = nested_plans(conn, "SELECT prune_lease_events()", rollback=True)
    counts = scan_counts(plans)
    print("  its pick of the oldest events (auto_explain, a rolled-back call):")
    for node in pick_scans(plans):
        describe_pick(node, "    ")
    print_scans(counts, len(plans))
    seq = {relation for (node_type, relation, _) in counts if node_type == "Seq Scan"}
    check("proxy_lease_events" not in seq, "prune_lease_events: no Seq Scan on proxy_lease_events")
    indexes = {index for (_, _, index) in counts if index}
    check("proxy_lease_events_occurred_at_idx" in indexes,
          f"prune_lease_events: picks the oldest through proxy_lease_events_occurred_at_idx (used: {sorted(indexes)})")

    stats = "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'proxy_lease_events'"
    dead_before, autovacuums_before = conn.execute(stats).fetchone()
    batches: list[tuple[int, float]] = []
    while True:
        started = time.perf_counter()
        pruned = conn.execute("SELECT prune_lease_events()").fetchone()[0]
        batches.append((pruned, (time.perf_counter() - started) * 1000))
        if pruned == 0 or len(batches) > old // 50000 + 5:
            break
    dead_after, autovacuums_after = conn.execute(stats).fetchone()
    work = [(n, ms) for n, ms in batches if n]
    pruned_total = sum(n for n, _ in work)
    seconds = sum(ms for _, ms in work) / 1000
    full = [ms for n, ms in work if n == 50000]
    print("  per call (events, ms): " + ", ".join(f"{n:,}/{ms:.0f}" for n, ms in batches))
    if full:
        print(f"  full batches of 50,000: {len(full)}, median {statistics.median(full):.0f} ms, "
              f"first {full[0]:.0f} ms, last {full[-1]:.0f} ms, max {max(full):.0f} ms")
    print(f"  {pruned_total:,} events pruned in {seconds:.2f} s: {pruned_total / max(seconds, 1e-9):,.0f} events/s; "
          f"the call with nothing left (no VACUUM since): {batches[-1][1]:.1f} ms")
    print(f"  n_dead_tup {dead_before:,} -> {dead_after:,}; autovacuum runs on it meanwhile: "
          f"{autovacuums_after - autovacuums_before}")
    check(pruned_total == old and batches[-1][0] == 0, f"prune_lease_events pruned exactly the {old:,} old events")
    steady_state(conn, steady, summary)
    if full:
        summary.append(("prune_lease_events(), per full batch of 50,000",
                        f"median {statistics.median(full):.0f} ms (first {full[0]:.0f}, last {full[-1]:.0f}, "
                        f"max {max(full):.0f})"))
    summary.append((f"prune_lease_events(), {pruned_total:,} events", f"{pruned_total / max(seconds, 1e-9):,.0f} events/s"))
    summary.append(("prune_lease_events(), nothing left right after the backlog (no VACUUM)",
                    f"{batches[-1][1]:.1f} ms"))


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the tests")
    parser.add_argument("--proxies", type=int, help="proxies (1,000,000; 20,000 --quick)")
    parser.add_argument("--held", type=int, default=2000, help="proxies held (2,000)")
    parser.add_argument("--containers", type=int, default=100, help="containers holding them (100)")
    parser.add_argument("--dead-containers", type=int, default=10,
                        help="of those, containers with no task in processing: their proxies are orphaned (10)")
    parser.add_argument("--expired", type=int, default=20, help="live holders whose lease ran out (20)")
    parser.add_argument("--blocked-held", type=int, default=20, help="proxies blocked while held (20)")
    parser.add_argument("--tasks", type=int, help="tasks across both task tables (1,000,000; 20,000 --quick)")
    parser.add_argument("--grants", type=int, help="acquire+release pairs for the event size (50,000; 2,000 --quick)")
    parser.add_argument("--events", type=int, help="ordinary events for the recovery view (1,000,000; 20,000 --quick)")
    parser.add_argument("--reclaims", type=int, help="reclaims for the recovery view (10,000; 1,000 --quick)")
    parser.add_argument("--old-events", type=int, help="events past retention to prune (1,000,000; 110,000 --quick)")
    parser.add_argument("--ab-pairs", type=int,
                        help="server-side acquire+release pairs per arm of the audit off/on comparison "
                             "(20,000; 1,000 --quick)")
    parser.add_argument("--steady-old", type=int, default=1000,
                        help="events past retention in the steady-state prune, fewer than a batch (1,000)")
    parser.add_argument("--runs", type=int, help="timed calls per view (20; 5 --quick)")
    args = parser.parse_args()
    defaults = {"proxies": (1_000_000, 20_000), "tasks": (1_000_000, 20_000), "grants": (50_000, 2_000),
                "events": (1_000_000, 20_000), "reclaims": (10_000, 1_000), "old_events": (1_000_000, 110_000),
                "runs": (20, 5), "ab_pairs": (20_000, 1_000)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if not 0 < args.held <= args.proxies or args.held % args.containers:
        parser.error("--held must be a multiple of --containers, and at most --proxies")
    began = time.perf_counter()
    summary: list[tuple[str, str]] = []
    print(f"os.cpu_count() = {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # Without fsync, as the figures these scripts recorded were taken; bench/run.py's scenarios keep it on.
    with Harness(quick=args.quick, settings=(*SERVER_SETTINGS, "fsync=off")) as harness:
        url = harness.database("bench", "head")
        with psycopg.connect(url, autocommit=True) as conn:
            print(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} (fsync=off), "
                  f"{conn.execute('SELECT version_num FROM proxy_leases_alembic_version').fetchone()[0]}")
            started = time.perf_counter()
            expected = load_fleet(conn, args)
            print(f"loaded {args.proxies:,} proxies ({args.held:,} held by {args.containers} containers, "
                  f"{args.dead_containers} of them dead; {expected['stuck']} stuck, {expected['blocked']:,} blocked "
                  f"and free) and {args.tasks:,} tasks ({expected['processing']:,} in processing) "
                  f"in {time.perf_counter() - started:.0f} s")
            status_views(conn, expected, args.runs, summary)
            health_view(conn, expected, args.runs, summary)
            event_size_and_trigger_cost(conn, args.grants, summary)
            audit_ab(conn, args.ab_pairs, summary)
            recovery_by_hour(conn, args.events, args.reclaims, args.runs, summary)
            prune(conn, args.old_events, args.steady_old, summary)

    print("\n== summary")
    width = max(len(what) for what, _ in summary)
    for what, figure in summary:
        print(f"  {what:<{width}}  {figure}")
    print(f"\ntotal runtime {time.perf_counter() - began:.0f} s, "
          f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failures:
        print(f"\n{len(failures)} check(s) FAILED:")
        for what in failures:
            print(f"  {what}")
        sys.exit(1)


if __name__ == "__main__":
    main()
