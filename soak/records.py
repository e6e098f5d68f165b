"""What the workers believe, kept outside the database: each worker's grants and the fenced calls that
succeeded on them, and whether the worker is live, paused or dead, and since when.

Besides, for each worker, when its last statement (any statement, on any of its connections, COMMIT
included) came back and whether one is in flight: everything that can extend a worker's lease is one
of its statements (acquire_proxy asked again, renew_proxy_lease, a task heartbeat through its
trigger), and each sets the lease end to at most its reply + lease_duration. So a renewal or release
sent while nothing else of the worker was in flight, more than lease_duration after its last
statement came back, names a lease that had already ended (the checker's I6). Every renew_proxy_lease
and release_proxy call is kept as a FencedCall (ok or fenced out) for the checker to judge.

Times are time.time() on this host, the database's host too, so they compare with its clock_timestamp().

A worker fills a slot of its container: the worker the supervisor starts after one dies takes its slot,
so that "how long until the worker that was running when the server was killed was back at work" can be
measured across the new worker ids a restart brings. The server crashes (soak/faults.py, server_crash)
are kept here too: when the server was killed and accepted connections again, and what was read of it
around the kill, for the checker's I7 and I8 and for every thread that must tell a connection lost to a
crash (reconnect, not an error) from one lost to anything else.
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
    asked_at: float | None = None      # when that acquire_proxy call was sent
    # When the last renew_proxy_lease or release_proxy that succeeded on it was sent. block_proxy is not
    # counted here: since block_proxy v5 (0016), true no longer proves that the grant still held the
    # proxy (it also blocks a free proxy whose grant ended, if nobody was granted it since). The checker
    # decides with the trail whether a block proves anything (blocked_at).
    proven_until: float | None = None
    renewed_at: float | None = None    # when the last renew_proxy_lease that succeeded on it was sent
    blocked_at: float | None = None    # when a block_proxy that returned true on it was sent
    ended: str | None = None           # released | blocked | fenced_out


@dataclass
class FencedCall:
    """One renew_proxy_lease or release_proxy call on a grant, as its worker saw it."""

    worker_id: str
    proxy_id: int
    token: int
    call: str                          # renew | release
    sent_at: float
    replied_at: float
    ok: bool                           # renewed, or release_proxy returned true
    # When the worker's last statement before this one came back, if none of its statements was in
    # flight when this one was sent (None otherwise, or if it had sent none): the lease it names ended
    # at quiet_since + lease_duration at the latest.
    quiet_since: float | None = None
    returned: float | None = None      # renew_proxy_lease's returned leased_until (epoch seconds)


@dataclass
class ServerCrash:
    """One kill of the server (pg_ctl stop -m immediate) and its restart on the same data directory."""

    number: int
    killed_at: float
    # The slots with a live worker at the kill: examples/worker.py's (records) and examples/async_worker.py's.
    worker_slots: set[str]
    async_slots: set[str]
    # A transaction left open at the kill (soak/faults.py): a proxy inserted and a grant taken by this worker
    # id, neither committed. Neither may be there after the restart (I7).
    probe_worker: str | None = None
    probe_address: str | None = None
    probe_token: int | None = None
    sequence_before: tuple[int, int] | None = None  # proxy_lease_token_seq's (last_value, log_cnt) at the kill
    dead_at: float | None = None                    # when pg_ctl said the server was gone: a statement sent
                                                    # after this went to the restarted server, or nowhere
    accepting_at: float | None = None               # when the restarted server accepted connections
    restarted_at: float | None = None               # its pg_postmaster_start_time(): what came before it was
                                                    # the old server's
    sequence_after: int | None = None               # last_value read right after the restart (the first
                                                    # workers back may have taken a few tokens already)
    figures: dict | None = None                     # the checker's, once it has checked the restart
    # slot -> when the first call of its worker (or of the one that took its place) succeeded on the
    # restarted server: the end of its reconnect wait.
    back: dict[str, float] = field(default_factory=dict)


@dataclass
class Worker:
    worker_id: str
    container: str
    slot: str = ""
    gate: Gate = field(default_factory=Gate)
    stop: threading.Event = field(default_factory=threading.Event)
    status: str = LIVE
    started_at: float = field(default_factory=time.time)
    silent_since: float | None = None  # paused or dead since: nothing of its reaches the database after it
    died_at: float | None = None
    cause: str | None = None
    pauses: list[tuple[float, float | None]] = field(default_factory=list)  # (paused at, resumed at)
    grants: list[Grant] = field(default_factory=list)
    inflight: int = 0                   # statements sent and not yet come back, on all its connections
    last_replied: float | None = None   # when its last statement came back (or failed)
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
        # renew_proxy_lease and release_proxy calls the checker has not looked at yet.
        self._calls: list[FencedCall] = []
        # Every worker id of the run, the async workers' too, and its slot.
        self.slot_of: dict[str, str] = {}
        # Workers that returned at the end of the run, having given back what they held.
        self.stopped_cleanly: set[str] = set()
        self.async_exit_causes: Counter[str] = Counter()
        self.server_crashes: list[ServerCrash] = []
        self.server_up = threading.Event()
        self.server_up.set()

    def add_worker(self, worker_id: str, container: str, slot: str = "") -> Worker:
        with self.lock:
            worker = self.workers[worker_id] = Worker(worker_id, container, slot)
            self.slot_of[worker_id] = slot
            return worker

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    # -- what the instrumented connection sees ---------------------------------------------------

    def statement_sent(self, worker: Worker) -> float | None:
        """A statement of the worker is about to be sent. Returns when its last statement came back if
        none is in flight now, else None (one in flight may be renewing the lease as we speak)."""
        with self.lock:
            quiet_since = worker.last_replied if worker.inflight == 0 else None
            worker.inflight += 1
            return quiet_since

    def statement_done(self, worker: Worker, at: float, ok: bool = True, sent_at: float | None = None) -> None:
        """That statement came back (a result, ok, or an error)."""
        with self.lock:
            worker.inflight -= 1
            worker.last_replied = max(worker.last_replied or at, at)
            crash = self.server_crashes[-1] if self.server_crashes else None
            if (ok and crash and crash.dead_at is not None and sent_at is not None and sent_at > crash.dead_at
                    and worker.slot in crash.worker_slots):
                crash.back.setdefault(worker.slot, at)

    def on_acquire(self, worker: Worker, proxy_id: int, token: int, replied_at: float,
                   asked_at: float | None = None) -> None:
        with self.lock:
            self.counters["acquisitions"] += 1
            worker.grants.append(Grant(worker.worker_id, proxy_id, token, replied_at, asked_at))

    def on_fenced(self, worker: Worker, call: str, proxy_id: int, token: int, sent_at: float, ok: bool, *,
                  replied_at: float | None = None, quiet_since: float | None = None,
                  returned: float | None = None) -> None:
        """A renew_proxy_lease, release_proxy or block_proxy call returned: ok, or fenced out. For a
        renewal or release, also kept as a FencedCall for the checker's I6 (quiet_since, returned: see
        FencedCall)."""
        with self.lock:
            grant = next((g for g in reversed(worker.grants) if g.proxy_id == proxy_id and g.token == token), None)
            if grant is None:
                self.errors.append(f"{worker.worker_id} called {call}({proxy_id}, {token}) on a grant it never got")
                return
            if call != "block":
                self._calls.append(FencedCall(worker.worker_id, proxy_id, token, call, sent_at,
                                              sent_at if replied_at is None else replied_at, ok, quiet_since,
                                              returned))
            if ok:
                self.counters[{"renew": "renewals", "release": "releases", "block": "blocks"}[call]] += 1
                if call == "block":
                    # Not a proof by itself (block_proxy v5): the checker decides with the trail.
                    grant.blocked_at = max(grant.blocked_at or sent_at, sent_at)
                    grant.ended = "blocked"
                    return
                grant.proven_until = max(grant.proven_until or sent_at, sent_at)
                if call == "renew":
                    grant.renewed_at = max(grant.renewed_at or sent_at, sent_at)
                self._changed.append(grant)
                if call == "release":
                    grant.ended = "released"
            else:
                self.counters[f"fenced_out_{call}"] += 1
                grant.ended = grant.ended or "fenced_out"

    def take_changed(self) -> list[Grant]:
        with self.lock:
            changed, self._changed = self._changed, []
            return changed

    def take_calls(self) -> list[FencedCall]:
        with self.lock:
            calls, self._calls = self._calls, []
            return calls

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

    # -- server crashes ----------------------------------------------------------------------------

    def server_killed(self, crash: ServerCrash) -> None:
        """Called just before the kill is sent: from now on a lost connection is expected."""
        with self.lock:
            self.server_crashes.append(crash)
            self.server_up.clear()

    def server_back(self, crash: ServerCrash, accepting_at: float) -> None:
        with self.lock:
            crash.accepting_at = accepting_at
            self.server_up.set()

    def lost_to_server_crash(self, connected_at: float) -> bool:
        """Whether a connection (or an attempt to make one) begun at `connected_at` may have been lost to a
        server crash: the server was killed since, or is down. Anything else is an error of the run."""
        with self.lock:
            return not self.server_up.is_set() or any(c.killed_at >= connected_at for c in self.server_crashes)

    def outages(self) -> list[tuple[float, float | None]]:
        """(killed at, accepting again at or None) of every server crash so far."""
        with self.lock:
            return [(c.killed_at, c.accepting_at) for c in self.server_crashes]

    def live(self) -> list[Worker]:
        with self.lock:
            return [w for w in self.workers.values() if w.status == LIVE and not w.dying]
