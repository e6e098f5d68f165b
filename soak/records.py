"""What the workers believe, kept outside the database: each worker's grants and the fenced calls that
succeeded on them, and whether the worker is live, paused or dead, and since when.

Times are time.time() on this host, the database's host too, so they compare with its clock_timestamp().
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from soak.gate import Gate

LIVE, PAUSED, DEAD = "live", "paused", "dead"


@dataclass
class Grant:
    worker_id: str
    proxy_id: int
    token: int
    acquired_at: float                 # when the acquire_proxy reply that returned it arrived
    proven_until: float | None = None  # when the last fenced call that succeeded on it was sent
    renewed_at: float | None = None    # when the last renew_proxy_lease that succeeded on it was sent
    ended: str | None = None           # released | blocked | fenced_out


@dataclass
class Worker:
    worker_id: str
    container: str
    gate: Gate = field(default_factory=Gate)
    stop: threading.Event = field(default_factory=threading.Event)
    status: str = LIVE
    started_at: float = field(default_factory=time.time)
    silent_since: float | None = None  # paused or dead since: nothing of its reaches the database after it
    died_at: float | None = None
    cause: str | None = None
    pauses: list[tuple[float, float | None]] = field(default_factory=list)  # (paused at, resumed at)
    grants: list[Grant] = field(default_factory=list)
    ban_next: bool = False
    dying: bool = False


class Records:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.workers: dict[str, Worker] = {}
        self.counters: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.crash_causes: Counter[str] = Counter()
        self.crash_tracebacks: dict[str, str] = {}
        self.errors: list[str] = []
        # Grants whose proof interval changed since the checker last looked.
        self._changed: list[Grant] = []

    def add_worker(self, worker_id: str, container: str) -> Worker:
        with self.lock:
            worker = self.workers[worker_id] = Worker(worker_id, container)
            return worker

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    # -- what the instrumented connection sees ---------------------------------------------------

    def on_acquire(self, worker: Worker, proxy_id: int, token: int, replied_at: float) -> None:
        with self.lock:
            self.counters["acquisitions"] += 1
            worker.grants.append(Grant(worker.worker_id, proxy_id, token, replied_at))

    def on_fenced(self, worker: Worker, call: str, proxy_id: int, token: int, sent_at: float, ok: bool) -> None:
        """A renew_proxy_lease, release_proxy or block_proxy call returned: ok, or fenced out."""
        with self.lock:
            grant = next((g for g in reversed(worker.grants) if g.proxy_id == proxy_id and g.token == token), None)
            if grant is None:
                self.errors.append(f"{worker.worker_id} called {call}({proxy_id}, {token}) on a grant it never got")
                return
            if ok:
                self.counters[{"renew": "renewals", "release": "releases", "block": "blocks"}[call]] += 1
                grant.proven_until = max(grant.proven_until or sent_at, sent_at)
                if call == "renew":
                    grant.renewed_at = max(grant.renewed_at or sent_at, sent_at)
                self._changed.append(grant)
                if call != "renew":
                    grant.ended = "released" if call == "release" else "blocked"
            else:
                self.counters[f"fenced_out_{call}"] += 1
                grant.ended = grant.ended or "fenced_out"

    def take_changed(self) -> list[Grant]:
        with self.lock:
            changed, self._changed = self._changed, []
            return changed

    # -- life and death --------------------------------------------------------------------------

    def begin_silence(self, worker: Worker) -> bool:
        """Claims a live worker for a fault; False if it is already paused, dying or dead."""
        with self.lock:
            if worker.status != LIVE or worker.dying:
                return False
            worker.dying = True
            return True

    def paused(self, worker: Worker, at: float) -> None:
        with self.lock:
            worker.status, worker.silent_since, worker.dying = PAUSED, at, False
            worker.pauses.append((at, None))

    def resumed(self, worker: Worker, at: float) -> None:
        with self.lock:
            if worker.status == PAUSED:
                worker.status, worker.silent_since = LIVE, None
                worker.pauses[-1] = (worker.pauses[-1][0], at)

    def died(self, worker: Worker, at: float, cause: str) -> bool:
        """Marks the worker dead (from live or paused); False if it already was."""
        with self.lock:
            if worker.status == DEAD:
                return False
            worker.status, worker.died_at, worker.cause, worker.dying = DEAD, at, cause, False
            worker.silent_since = at if worker.silent_since is None else worker.silent_since
            return True

    def snapshot(self) -> list[tuple[str, str, float | None]]:
        """(worker id, status, silent since) of every worker, under the lock."""
        with self.lock:
            return [(w.worker_id, w.status, w.silent_since) for w in self.workers.values()]

    def live(self) -> list[Worker]:
        with self.lock:
            return [w for w in self.workers.values() if w.status == LIVE and not w.dying]
