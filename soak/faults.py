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
  server_crash     PostgreSQL killed with pg_ctl stop -m immediate, a transaction left open (the probe: a proxy
                   inserted and a grant taken, neither committed), and started again on the same data
                   directory after server_down_seconds. Every connection is lost: the workers' processes end
                   and their supervisor starts new ones; the other faults wait until every worker that was
                   live at the kill is back (a call of it, or of the worker in its place, succeeded on the
                   restarted server; at most a minute), so that its reconnect wait is its own. Only on a
                   server of the soak's own (soak/run.py main, the crash test): on the suite's shared server
                   it would break every other test. Besides the random draw (config.server_faults),
                   config.server_crash_at crashes it at chosen moments.
"""

from __future__ import annotations

import random
import threading
import time

import psycopg

from soak.fleet import Fleet
from soak.records import Records, ServerCrash

# How long the other faults wait after a server crash for every worker live at the kill to be back.
FLEET_BACK_TIMEOUT = 60.0


class FaultInjector(threading.Thread):
    def __init__(self, fleet: Fleet, records: Records, rng: random.Random, stop: threading.Event,
                 server=None, async_fleet=None) -> None:  # noqa: ANN001 - a ThrowawayPostgres, an AsyncFleet
        super().__init__(name="fault-injector", daemon=True)
        self.fleet, self.records, self.rng, self.stop = fleet, records, rng, stop
        self.server, self.async_fleet = server, async_fleet
        if fleet.config.crashes_server and server is None:
            raise ValueError("server faults need the soak's own server (run_soak(..., server=...))")
        self.kinds = list(fleet.config.fault_weights)
        self.weights = [fleet.config.fault_weights[k] for k in self.kinds]

    def run(self) -> None:
        started = time.monotonic()
        crash_at = sorted(started + at for at in self.fleet.config.server_crash_at)
        while True:
            wait = self.rng.uniform(*self.fleet.config.fault_every)
            if crash_at:
                wait = min(wait, max(0.0, crash_at[0] - time.monotonic()))
            if self.stop.wait(wait):
                return
            if crash_at and time.monotonic() >= crash_at[0]:
                crash_at.pop(0)
                kind = "server_crash"
            else:
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

    def server_crash(self) -> bool:
        config = self.fleet.config
        number = len(self.records.server_crashes) + 1
        crash = ServerCrash(number, 0.0, worker_slots={w.slot for w in self.records.live()
                                                       if self.fleet.containers[w.container].up},
                            async_slots=self.async_fleet.running_slots() if self.async_fleet else set())
        probe = psycopg.connect(self.fleet.url, autocommit=True, application_name="soak:crash-probe")
        try:
            probe.execute("BEGIN")
            crash.probe_worker, crash.probe_address = f"crashprobe_{number}", f"http://crash-probe-{number}:3128"
            probe.execute("INSERT INTO proxies (address) VALUES (%s)", (crash.probe_address,))
            granted = probe.execute("SELECT proxy_id, lease_token FROM acquire_proxy(%s)",
                                    (crash.probe_worker,)).fetchone()  # the inserted proxy, if none other is free
            crash.probe_token = granted[1] if granted else None
            crash.sequence_before = probe.execute("SELECT last_value, log_cnt FROM proxy_lease_token_seq").fetchone()
            crash.killed_at = time.time()
            self.records.server_killed(crash)
            self.server.crash()
            crash.dead_at = time.time()
        finally:
            probe.close()  # its session, and the transaction, went with the server
        # The outage: how long the server stays down is the fault's own choice, not a wait for anything.
        time.sleep(self.rng.uniform(*config.server_down_seconds))
        self.server.restart()
        accepting_at = time.time()
        with psycopg.connect(self.fleet.url, autocommit=True, application_name="soak:crash-probe") as conn:
            crash.restarted_at, crash.sequence_after = conn.execute(
                "SELECT extract(epoch FROM pg_postmaster_start_time())::float8, last_value "
                "FROM proxy_lease_token_seq").fetchone()
        self.records.server_back(crash, accepting_at)
        # The other faults wait for the fleet to be back: a worker killed by one while it reconnects would
        # make its reconnect wait the fault's. (The async workers are never picked by the other faults.)
        deadline = time.monotonic() + FLEET_BACK_TIMEOUT
        while (not crash.worker_slots <= set(crash.back)
               and time.monotonic() < deadline and not self.stop.wait(0.1)):
            pass
        return True

    def ban(self) -> bool:
        worker = self._pick_live(holding=True)
        if worker is None:
            return False
        worker.ban_next = True
        return True
