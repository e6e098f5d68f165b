"""Crash soak: 3 containers x 15 workers running examples/worker.py's run_worker under random faults,
watched by an independent checker. `scripts/soak --minutes 10`; tests/concurrency/test_soak.py runs a short one."""
