"""The benchmarks: `scripts/bench` runs them all (bench/run.py); see bench/results.md."""
