"""The benchmark scripts still run (in a quick mode): their figures are only printed, never asserted."""

import json
import re
import subprocess
import sys

from tools.harness import ROOT


def test_every_scenario_runs_and_writes_results_and_plots(tmp_path):
    """scripts/bench --quick: every scenario end to end, its invariants checked by the scenarios themselves."""
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["scenarios"]) == {"sweep", "acquire", "triggers", "recovery", "size", "peers"}

    audits = results["scenarios"]["acquire"]["audits"]
    assert audits and all(a["grants"] > 0 and a["double_grants"] == a["reused_tokens"] == 0 for a in audits)
    recovery = results["scenarios"]["recovery"]
    for path, reason in (("trigger", "requeued"), ("lease", "lease_expired")):
        (one,) = recovery["paths"][path]
        assert 0 < one["recovered_s"] <= recovery["bound_s"] and one["reasons"] == [reason], (path, one)
    peers = {(cell["system"], cell["clients"]) for cell in results["scenarios"]["peers"]["cells"]}
    assert peers == {(system, k) for system in ("proxy_leases", "procrastinate", "pgqueuer") for k in (1, 2)}

    page = (tmp_path / "results.md").read_text()
    for heading in ("## Targets", "## 1. Sweep cost vs size", "## 2. Acquisition throughput",
                    "## 3. The fleet's own statements: today's schema vs head", "## 4. Recovery time", "## 5. Size",
                    "## 6. Against other PostgreSQL queues"):
        assert heading in page
    assert len(re.findall(r"\*\*(met|missed)\*\*", page)) == 11, page
    for plot in ("sweep.png", "acquire.png", "fleet_cost.png", "triggers.png", "recovery.png", "peers.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot
        assert f"]({plot})" in page


def test_acquire_release_runs_and_its_invariants_hold():
    result = subprocess.run(
        [sys.executable, "bench/acquire_release.py", "--quick", "--seconds", "0.3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("  ok   ") == 4 and "FAIL" not in result.stdout
    assert "Index Scan using proxies_free_rotation_idx" in result.stdout
    assert re.search(r"^\s+16 \| 8 proxies\s+\|\s+[\d,]+ \|", result.stdout, re.M), result.stdout


def test_observability_at_scale_runs_and_its_plan_and_count_checks_hold():
    result = subprocess.run(
        [sys.executable, "bench/observability_at_scale.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check FAIL" not in result.stdout and result.stdout.count("check ok") >= 20, result.stdout
    assert "prune_lease_events, steady state: the retention cutoff bounds the pick" in result.stdout
    for label in ("SELECT \\* FROM proxy_pool_status", "SELECT \\* FROM proxy_pool_by_container",
                  "SELECT \\* FROM proxy_recovery_by_hour"):
        assert re.search(rf"{label}.*median \d+\.\d+ ms", result.stdout), result.stdout
    assert re.search(r"bytes per event.*\d+ B", result.stdout), result.stdout
