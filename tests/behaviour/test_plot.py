"""`proxy-leases plot`: the pool over time, rebuilt from the audit trail, on the incident."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from proxy_leases.plot import pool_history
from tests.helpers import upgraded_incident
from tools.harness import proxy_leases_cli


def test_the_incident_drawn_from_the_trail_shows_13_free_then_29_and_16_reclaims(fresh_database, tmp_path):
    database = upgraded_incident(fresh_database())
    with database.connect() as conn:
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    database.run("SELECT release_stuck_proxies()")
    free_proxy = database.one("SELECT min(id) FROM proxies WHERE NOT is_in_use AND NOT is_blocked")
    # A block, the same block replaced (another reason: not a second blocked proxy), then lifted.
    database.run("UPDATE proxies SET is_blocked = true, blocked_reason = 'HTTP 403' WHERE id = %s", (free_proxy,))
    database.run("UPDATE proxies SET blocked_reason = 'HTTP 429' WHERE id = %s", (free_proxy,))
    database.run("SELECT unblock_proxy(%s)", (free_proxy,))

    with psycopg.connect(database.url, autocommit=True) as conn:
        until = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        history = pool_history(conn, started - timedelta(seconds=1), until)
    figures = list(zip(history.held, history.blocked, history.free))
    assert history.total == 100
    assert figures[0] == (60, 27, 13)                 # the report's "before"
    assert (44, 27, 29) in figures                    # after the sweep: the report's "after"
    assert (44, 28, 28) in figures and (44, 29, 27) not in figures
    assert figures[-1] == (44, 27, 29)
    assert len(history.reclaims) == 16
    assert {reason for _, reason in history.reclaims} <= {"orphaned", "lease_expired", "inconsistent"}

    picture = tmp_path / "pool.png"
    drawn = proxy_leases_cli("plot", "--url", database.url, "--hours", "1", "--output", str(picture))
    assert drawn.returncode == 0, drawn.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert drawn.stdout.strip().endswith("16 reclaims; now 44 held, 27 blocked, 29 free of 100")


def test_plot_is_refused_where_proxy_leases_is_not_installed(fresh_database, tmp_path):
    bare = fresh_database()
    drawn = proxy_leases_cli("plot", "--url", bare.url, "--output", str(tmp_path / "pool.png"))
    assert drawn.returncode == 2 and "is not installed" in drawn.stderr
    assert not (tmp_path / "pool.png").exists()
