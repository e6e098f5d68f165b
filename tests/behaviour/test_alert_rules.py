"""monitoring/alerts.yml: valid for promtool, replayed on the incident (monitoring/alerts_test.yml), and
reading only metrics that monitoring/postgres_exporter.yml defines."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tools.harness import ROOT

MONITORING = ROOT / "monitoring"


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "no promtool: apt-get install prometheus (scripts/setup does)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def exporter_metrics() -> set[str]:
    """Every metric the exporter's custom queries produce: <query>_<column>, LABEL columns excepted."""
    queries = yaml.safe_load((MONITORING / "postgres_exporter.yml").read_text())
    return {f"{name}_{column}" for name, query in queries.items() for metric in query["metrics"]
            for column, spec in metric.items() if spec["usage"] != "LABEL"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_for_promtool():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_the_incident_fires_the_free_pool_rule_and_a_healthy_pool_fires_none():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_replay_fails_when_the_free_pool_rule_would_miss_the_incident(tmp_path):
    """The replay can fail: with a floor of 10 the pool at 13 raises nothing, and promtool says so."""
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path)
    text = (MONITORING / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(text.replace(
        "expr: proxy_leases_pool_free < proxy_leases_settings_free_pool_floor", "expr: proxy_leases_pool_free < 10"))
    tested = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode == 1
    assert "alertname: ProxyLeasesFreePoolLow" in tested.stdout + tested.stderr


def test_every_metric_a_rule_reads_is_one_the_exporter_produces():
    produced = exporter_metrics() | {"pg_up"}     # pg_up: the exporter's own, whatever its queries
    for rule in rules():
        read = set(re.findall(r"\b((?:proxy_leases|pg)_[a-z0-9_]+)\b", rule["expr"]))
        assert read, rule["alert"]
        assert read <= produced, (rule["alert"], read - produced)
    # and every replayed series is one of them too
    replayed = set(re.findall(r"'(proxy_leases_[a-z0-9_]+)\{", (MONITORING / "alerts_test.yml").read_text()))
    assert replayed <= produced, replayed - produced


def test_every_label_value_a_rule_or_the_replay_names_is_one_the_database_gives(db):
    """A check or an event reason misspelt in a rule would never match, and promtool could not tell."""
    checks = {name for (name,) in db.all("SELECT name FROM proxy_leases_health")}
    text = (MONITORING / "alerts.yml").read_text() + (MONITORING / "alerts_test.yml").read_text()
    named_checks = set(re.findall(r'check="([a-z_]+)"', text))
    assert named_checks and named_checks <= checks, named_checks - checks
    # Event reasons: those the audit trigger and the lease API write (docs/watching.md, "Event reasons").
    reasons = set(re.findall(r"^\| `(?:granted|released|blocked|unblocked)` \| `([a-z_]+)` \|",
                             (ROOT / "docs" / "watching.md").read_text(), re.MULTILINE))
    named_reasons = set(re.findall(r'reason="([a-z_]+)"', text))
    assert named_reasons and named_reasons <= reasons, (named_reasons - reasons, sorted(reasons))
