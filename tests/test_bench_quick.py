"""The benchmark scripts still run (in a quick mode): their figures are only printed, never asserted."""

import re
import subprocess
import sys

from tests.helpers import ROOT


def test_sweep_at_scale_runs_and_frees_what_it_should():
    result = subprocess.run(
        [sys.executable, "bench/sweep_at_scale.py", "--proxies", "2000", "--tasks", "20000", "--runs", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "61 proxies held, 16 of them stuck" in result.stdout
    for label in ("nothing to free", "16 stuck", "the report's query"):
        assert re.search(rf"{label}.*\d+\.\d+ ms", result.stdout), result.stdout


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
