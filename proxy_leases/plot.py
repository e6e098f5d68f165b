"""`proxy-leases plot`: the pool over a period, drawn from the audit trail into a PNG, reclaims marked.

For people who would rather look than read, without Grafana (docs/monitoring.md, "A picture without
Grafana"). The trail records every grant, release, block and unblock, so the pool at any moment of
the period is the pool now with the later events undone, proxy by proxy:

- held: exact (each grant and each release is an event);
- blocked while not held: from the block and unblock events; a block replacing another one (another
  reason or end) is told apart by the proxy's previous block event;
- free: total (now) - held - blocked while not held.

Reclaims are proxy_recoveries' rows (proxies freed from dead workers), drawn at the moment each was
freed. Reads proxies, proxy_lease_events and proxy_recoveries: run it as proxy_leases_operator.
Needs matplotlib (pip install 'proxy-leases[plot]').
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass
class PoolHistory:
    times: list[datetime]
    held: list[int]
    blocked: list[int]
    free: list[int]
    total: int
    reclaims: list[tuple[datetime, str]]


# What each event sets in a proxy's [held, blocked] state: index and value.
SETS = {"granted": (0, True), "released": (0, False), "blocked": (1, True), "unblocked": (1, False)}


def apply(state: list[bool], event: str, forward: bool, replaced: bool) -> None:
    """The event done (forward) or undone; undoing a block that replaced another leaves the proxy blocked."""
    index, value = SETS[event]
    state[index] = value if forward else (replaced if event == "blocked" else not value)


def pool_history(conn: psycopg.Connection, since: datetime, until: datetime) -> PoolHistory:
    proxies = {pid: [bool(held), bool(blocked)] for pid, held, blocked in conn.execute(
        "SELECT id, is_in_use IS TRUE, is_blocked IS TRUE FROM public.proxies")}
    events = conn.execute(
        "SELECT occurred_at, proxy_id, event FROM public.proxy_lease_events WHERE occurred_at >= %s "
        "ORDER BY occurred_at, id", (since,)).fetchall()
    # Whether each block event found the proxy already blocked: its previous block or unblock event says.
    replaces_a_block: list[bool] = []
    last_block_event: dict[int, str] = {}
    for _, pid, event in events:
        replaces_a_block.append(event == "blocked" and last_block_event.get(pid) == "blocked")
        if event in ("blocked", "unblocked"):
            last_block_event[pid] = event
    # Undo every event since `since`, newest first: the state of each proxy at `since`.
    for (_, pid, event), replaced in zip(reversed(events), reversed(replaces_a_block)):
        apply(proxies.setdefault(pid, [False, False]), event, forward=False, replaced=replaced)
    total = len(proxies)
    held = sum(1 for h, _ in proxies.values() if h)
    blocked = sum(1 for h, b in proxies.values() if b and not h)

    # Then replay them, oldest first, counting as each proxy changes: one step per event.
    history = PoolHistory([since], [held], [blocked], [total - held - blocked], total=total, reclaims=[])
    for (at, pid, event), replaced in zip(events, replaces_a_block):
        if at > until:
            break
        state = proxies[pid]
        held, blocked = held - state[0], blocked - (state[1] and not state[0])
        apply(state, event, forward=True, replaced=replaced)
        held, blocked = held + state[0], blocked + (state[1] and not state[0])
        history.times.append(at)
        history.held.append(held)
        history.blocked.append(blocked)
        history.free.append(total - held - blocked)
    history.times.append(until)
    for series in (history.held, history.blocked, history.free):
        series.append(series[-1])
    history.reclaims = conn.execute(
        "SELECT freed_at, reason FROM public.proxy_recoveries WHERE freed_at BETWEEN %s AND %s ORDER BY freed_at",
        (since, until)).fetchall()
    return history


def draw(history: PoolHistory, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5), dpi=100)
    axes.step(history.times, history.free, where="post", label="free", color="tab:green", linewidth=2)
    axes.step(history.times, history.held, where="post", label="held", color="tab:blue")
    axes.step(history.times, history.blocked, where="post", label="blocked (not held)", color="tab:gray")
    if history.reclaims:
        at = [when for when, _ in history.reclaims]
        free_then = [history.free[max(bisect.bisect_right(history.times, when) - 1, 0)] for when in at]
        axes.scatter(at, free_then, marker="v", color="tab:red", zorder=3,
                     label=f"reclaimed from dead workers ({len(at)})")
    axes.set_ylim(0, max(history.total, 1) * 1.05)
    axes.set_ylabel(f"proxies (of {history.total})")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run(conn: psycopg.Connection, path: str, hours: float) -> int:
    conn.execute("SET TIME ZONE 'UTC'")
    # One snapshot for the proxies, the events and the recoveries: a write in between would skew the undo.
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        until = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        since = conn.execute("SELECT clock_timestamp() - make_interval(secs => %s)", (hours * 3600,)).fetchone()[0]
        history = pool_history(conn, since, until)
    try:
        draw(history, path, f"{conn.info.dbname}: the proxy pool, {since:%Y-%m-%d %H:%M} to {until:%H:%M} UTC")
    except (OSError, ValueError) as cannot:
        print(f"proxy-leases: cannot write {path}: {cannot}", file=sys.stderr)
        return 2
    print(f"{path}: {len(history.times)} points, {len(history.reclaims)} reclaims; now {history.held[-1]} held, "
          f"{history.blocked[-1]} blocked, {history.free[-1]} free of {history.total}")
    return 0
