"""examples/async_worker.py's workers beside the fleet: each a process of its own, run as the suite runs it
(tests/behaviour/test_async_worker.py), in container a1, and restarted by a supervisor when it exits.

They are other processes, on asyncpg, so the soak cannot observe their calls as it observes
examples/worker.py's: the checker knows them by the audit trail. Their grants are checked there with
everyone's (I1 (c), I2), their slots' first grants after a server crash give their reconnect waits, and at
the end each must exit 0 on SIGTERM, having given back what it held (I9). Its reconnect wait after a
server crash ends at the first line of its log that follows a call that succeeded on the restarted
server. Like examples/worker.py, the async worker's pool reconnects an idle connection, but a call that
fails ends its process (after it tried to give back its task): after a server crash, coming back is
mostly the supervisor's part.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from soak.config import SoakConfig
from soak.records import Records, ServerCrash

WORKER_FILE = Path(__file__).resolve().parent.parent / "examples" / "async_worker.py"
CONTAINER = "a1"
# The worker's log lines that follow a call that succeeded: its listener's LISTEN, and a grant.
SUCCESS_LINES = (" listening on proxy_available ", " through ")


def async_worker_url(base_url: str, config: SoakConfig) -> str:
    """The fleet's database as config.worker_role, as a URL (asyncpg takes no key=value conninfo)."""
    parts = urlsplit(base_url)
    if not config.worker_role:
        return base_url
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{config.worker_role}@{host}").geturl()


class AsyncFleet:
    def __init__(self, url: str, config: SoakConfig, records: Records, rng: random.Random) -> None:
        self.config, self.records, self.rng = config, records, rng
        self.env = {**os.environ, "DSN": async_worker_url(url, config),
                    "HEARTBEAT_SECONDS": str(config.heartbeat_every), "IDLE_WAIT_SECONDS": str(config.idle_wait),
                    "DEMO_SCRAPE_SECONDS": str(sum(config.scrape_seconds) / 2)}
        self.logs = Path(tempfile.mkdtemp(prefix="soak-async-workers-"))
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()
        self.running: dict[str, tuple[str, subprocess.Popen]] = {}  # slot -> (worker id, process)
        self.stopping = threading.Event()
        self.supervisor = threading.Thread(target=self._supervise, name="async-supervisor", daemon=True)

    def start(self) -> None:
        for n in range(1, self.config.async_workers + 1):
            self._spawn(f"{CONTAINER}/{n}")
        self.supervisor.start()

    def _spawn(self, slot: str) -> None:
        worker_id = f"{CONTAINER}_{next(self.numbers)}"  # a new id for every new process
        with self.records.lock:
            self.records.slot_of[worker_id] = slot
        with open(self.logs / f"{worker_id}.log", "w") as log:
            process = subprocess.Popen([sys.executable, str(WORKER_FILE)], env={**self.env, "WORKER_ID": worker_id},
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        with self.lock:
            self.running[slot] = (worker_id, process)
        self.records.count("async_workers_started")

    def _last_error(self, worker_id: str) -> str:
        """The exception that ended the process: the last line of its log that names one."""
        lines = (self.logs / f"{worker_id}.log").read_text(errors="replace").splitlines()
        named = [line for line in lines if line[:1].isalpha() and ("Error" in line or "Exception" in line)]
        return named[-1][:100] if named else f"no exception logged ({lines[-1][:80] if lines else 'empty log'})"

    def _supervise(self) -> None:
        restart_at: dict[str, float] = {}
        while not self.stopping.wait(0.1):
            with self.lock:
                ended = [(slot, worker_id) for slot, (worker_id, process) in self.running.items()
                         if process.poll() is not None]
                for slot, _ in ended:
                    del self.running[slot]
            for slot, worker_id in ended:
                with self.records.lock:
                    self.records.async_exit_causes[self._last_error(worker_id)] += 1
                restart_at[slot] = time.monotonic() + self.rng.uniform(*self.config.restart_after)
            for slot, at in list(restart_at.items()):
                if at <= time.monotonic():
                    del restart_at[slot]
                    self._spawn(slot)

    def record_back(self, crash: ServerCrash) -> None:
        """When each async slot live at the kill was back: the first success its workers logged after the
        server was gone (the log's clock is this host's, in milliseconds)."""
        with self.records.lock:
            workers = [(worker_id, slot) for worker_id, slot in self.records.slot_of.items()
                       if slot in crash.async_slots]
        for worker_id, slot in workers:
            for line in (self.logs / f"{worker_id}.log").read_text(errors="replace").splitlines():
                if any(marker in line for marker in SUCCESS_LINES):
                    at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    if at > crash.dead_at:
                        crash.back[slot] = min(at, crash.back.get(slot, at))
                        break

    def running_slots(self) -> set[str]:
        with self.lock:
            return {slot for slot, (_, process) in self.running.items() if process.poll() is None}

    def shutdown(self) -> None:
        """SIGTERM to every worker: each gives back its proxy and its task and exits 0."""
        self.stopping.set()
        self.supervisor.join()
        with self.lock:
            running = list(self.running.values())
        for _, process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for worker_id, process in running:
            try:
                code = process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self.records.error(f"async worker {worker_id} still running 15 s after SIGTERM")
                continue
            if code == 0:
                self.records.stopped_cleanly.add(worker_id)
            else:
                self.records.error(f"async worker {worker_id} exited {code} on SIGTERM: {self._last_error(worker_id)}")
        for crash in self.records.server_crashes:
            if crash.dead_at is not None:
                self.record_back(crash)
        shutil.rmtree(self.logs, ignore_errors=True)
