"""monitoring/postgres_exporter.yml, scraped from the real exporter (Debian's prometheus-postgres-exporter)
against the incident's database, connected as a role with nothing but pg_monitor; and the Grafana
dashboard (monitoring/grafana/proxy-leases.json), whose every metric must be in that scrape."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from tests.behaviour.test_health import CHECKS
from tests.helpers import as_role, upgraded_incident
from tools.harness import ROOT, revisions
from tools.throwaway_exporter import ThrowawayExporter

HEAD = revisions()[-1]


def unlabelled(samples, name: str) -> float:
    """The one sample of a metric with no label of its own (the exporter adds server=host:port to all)."""
    (value,) = samples[name].values()
    return value


def server(samples) -> str:
    """The server label the exporter adds to every metric."""
    (labels,) = samples["proxy_leases_pool_size"]
    return dict(labels)["server"]


def by(samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in samples[name].items()}


def pool(samples) -> tuple:
    return tuple(int(unlabelled(samples, f"proxy_leases_pool_{name}")) for name in ("size", "in_use", "blocked", "free", "stuck"))


@pytest.fixture
def incident(fresh_database):
    """The incident's pool after the upgrade, once the grace has passed: 16 proxies stuck."""
    database = upgraded_incident(fresh_database())
    database.run("CREATE ROLE exporter_monitor LOGIN IN ROLE pg_monitor")
    yield database
    database.run("DROP OWNED BY exporter_monitor; DROP ROLE exporter_monitor")


@pytest.fixture
def exporter(incident):
    with ThrowawayExporter(as_role(incident.url, "exporter_monitor", sslmode="disable")) as running:
        yield running


def test_the_scrape_shows_the_incident_before_the_sweep_and_the_pool_whole_after(incident, exporter):
    before = exporter.samples()
    assert unlabelled(before, "pg_exporter_last_scrape_error") == 0, exporter.log()
    assert unlabelled(before, "pg_exporter_user_queries_load_error") == 0, exporter.log()
    assert pool(before) == (100, 60, 27, 13, 16)
    assert by(before, "proxy_leases_container_held", "container") == {
        "8b4f59aa": 15, "93816237": 15, "b77514be": 16, "e1bf8c63": 14}
    assert by(before, "proxy_leases_container_stuck", "container") == {
        "8b4f59aa": 15, "93816237": 0, "b77514be": 1, "e1bf8c63": 0}
    health = by(before, "proxy_leases_health_ok", "check")
    assert set(health) == set(CHECKS)
    # Nothing has run the maintenance yet, and 13 free is below the floor of 20.
    assert [check for check, ok in health.items() if not ok] == [
        "free_pool_above_floor", "maintenance_on_time", "maintenance_succeeded"]
    assert "proxy_leases_maintenance_last_run_age_seconds" in before   # NaN: no run recorded

    with incident.connect() as conn:
        conn.execute("CALL run_lease_maintenance()")
    after = exporter.samples()
    assert pool(after) == (100, 44, 27, 29, 0)
    released = {dict(labels)["reason"]: value for labels, value in after["proxy_leases_events_total"].items()
                if dict(labels)["event"] == "released"}
    assert sum(released.values()) == 16
    assert released == dict(incident.all(
        "SELECT reason, count(*)::float8 FROM proxy_lease_events WHERE event = 'released' GROUP BY 1"))
    assert unlabelled(after, "proxy_leases_maintenance_last_run_ok") == 1
    assert 0 <= unlabelled(after, "proxy_leases_maintenance_last_run_age_seconds") < 60
    assert by(after, "proxy_leases_health_ok", "check") == {check: 1.0 for check in CHECKS}
    assert unlabelled(after, "proxy_leases_settings_lease_seconds") == 300
    assert unlabelled(after, "proxy_leases_settings_maintenance_period_seconds") == 60
    assert after["proxy_leases_revision_info"] == {(("revision", HEAD), ("server", server(after))): 1}


def test_the_event_counters_never_go_down_when_the_trail_is_pruned(incident, exporter):
    with incident.connect() as conn:
        conn.execute("CALL run_lease_maintenance()")
    counted = exporter.samples()["proxy_leases_events_total"]
    # Every event older than the retention: pruning deletes them all, and the counters stay.
    incident.run("ALTER TABLE proxy_lease_events DISABLE TRIGGER USER")
    incident.run("UPDATE proxy_lease_events SET occurred_at = occurred_at - interval '40 days'")
    incident.run("ALTER TABLE proxy_lease_events ENABLE TRIGGER USER")
    assert incident.one("SELECT prune_lease_events()") > 0
    assert incident.one("SELECT count(*) FROM proxy_lease_events") == 0
    assert exporter.samples()["proxy_leases_events_total"] == counted


def test_a_role_without_pg_monitor_gets_nothing_and_the_exporter_says_so(incident):
    incident.run("CREATE ROLE exporter_nobody LOGIN")
    try:
        with ThrowawayExporter(as_role(incident.url, "exporter_nobody", sslmode="disable")) as running:
            samples = running.samples()
            # The settings are everyone's to read (docs/operations.md, "Roles and rights"); nothing else is.
            assert {name for name in samples if name.startswith("proxy_leases_")} == {
                "proxy_leases_settings_lease_seconds", "proxy_leases_settings_maintenance_period_seconds",
                "proxy_leases_settings_free_pool_floor"}
            assert "permission denied for view proxy_pool_status" in running.log()
    finally:
        incident.run("DROP ROLE exporter_nobody")


def test_the_views_the_exporter_reads_are_refused_to_a_worker(incident):
    incident.run("CREATE ROLE exporter_worker LOGIN IN ROLE proxy_leases_worker")
    try:
        with psycopg.connect(as_role(incident.url, "exporter_worker"), autocommit=True) as conn:
            for view in ("proxy_leases_health", "proxy_lease_event_totals", "proxy_recovery_by_hour"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT * FROM {view}")
    finally:
        incident.run("DROP ROLE exporter_worker")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "proxy-leases.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions.append(dashboard["templating"]["list"][1]["query"]["query"])
    return {name for expr in expressions for name in re.findall(r"\b(proxy_leases_[a-z0-9_]+)\b", expr)}


def test_every_metric_the_dashboard_queries_is_in_the_scrape(incident, exporter):
    with incident.connect() as conn:
        conn.execute("CALL run_lease_maintenance()")      # frees 16: this hour has reclaims to show
    scraped = set(exporter.samples())
    wanted = dashboard_metrics()
    assert len(wanted) >= 15
    assert wanted <= scraped, wanted - scraped


def test_the_dashboards_panels_are_well_formed():
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "proxy-leases.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "proxy-leases"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["expr"] for target in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]
