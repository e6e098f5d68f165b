"""The fault injector: at random intervals, one fault of a random kind, counted by kind.

  connection_kill  pg_terminate_backend of one of a live worker's connections (found by application_name).
                   The worker copes (a lost heartbeat connection: it gives the task back) or its process
                   crashes (its main connection: run_worker raises) and the supervisor starts another.
  worker_stop      a live worker stops without releasing anything: its connections stay open and idle
                   (hung, at most max_hung_workers at once) or go away (killed). Another takes its place.
  worker_pause     every thread of a live worker freezes, connections open, for pause_seconds; then it
                   goes on as if nothing happened, and must find out through its fenced calls.
  container_crash  every worker of a container dies at once, connections killed; the container restarts
                   after restart_after: release_container_proxies(id) first, then 15 new workers.
  ban              the next scrape of a live worker that holds a proxy raises Banned(reason, cooldown).
"""

from __future__ import annotations

import random
import threading

from soak.fleet import Fleet
from soak.records import Records


class FaultInjector(threading.Thread):
    def __init__(self, fleet: Fleet, records: Records, rng: random.Random, stop: threading.Event) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.fleet, self.records, self.rng, self.stop = fleet, records, rng, stop
        self.kinds = list(fleet.config.fault_weights)
        self.weights = [fleet.config.fault_weights[k] for k in self.kinds]

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*self.fleet.config.fault_every)):
            # Every kind once before the draw takes over (a kind that could not be injected, a crash
            # while the container was down, say, is tried again): a short run then has them all.
            missing = [k for k in self.kinds if not self.records.faults[k]]
            kind = missing[0] if missing else self.rng.choices(self.kinds, self.weights)[0]
            try:
                if getattr(self, kind)():
                    self.records.faults[kind] += 1
            except Exception as exc:  # noqa: BLE001 - reported, and the soak goes on
                self.records.error(f"fault {kind}: {type(exc).__name__}: {exc}")

    def _pick_live(self, holding: bool = False):
        candidates = [w for w in self.records.live()
                      if self.fleet.containers[w.container].up
                      and (not holding or (w.grants and w.grants[-1].ended is None))]
        return self.rng.choice(candidates) if candidates else None

    def connection_kill(self) -> bool:
        worker = self._pick_live()
        return worker is not None and self.fleet.terminate([worker.worker_id], one=True) > 0

    def worker_stop(self) -> bool:
        worker = self._pick_live()
        if worker is None or not self.records.begin_silence(worker):
            return False
        self.fleet.stop_worker(worker)
        return True

    def worker_pause(self) -> bool:
        worker = self._pick_live()
        if worker is None or not self.records.begin_silence(worker):
            return False
        self.fleet.pause_worker(worker)
        return True

    def container_crash(self) -> bool:
        up = [c for c in self.fleet.containers.values() if c.up]
        if len(up) < 2:  # keep one container up at least
            return False
        self.fleet.crash_container(self.rng.choice(up))
        return True

    def ban(self) -> bool:
        worker = self._pick_live(holding=True)
        if worker is None:
            return False
        worker.ban_next = True
        return True
