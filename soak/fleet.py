"""The containers and their workers: threads running run_worker, a supervisor that restarts what died,
and the scrape each worker runs (short random work; sometimes the site bans the proxy).

run_worker has no reconnect of its own: a lost connection (a server crash among them) ends it with an
exception, as it ends the worker's process, and the supervisor starts a new worker in its slot after
restart_after, again and again while the server is down. The supervisor's own connection (the
container's start-up call, the faults' pg_terminate_backend) reconnects after a server crash."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import traceback
from datetime import timedelta

import psycopg

from soak.config import SoakConfig, application_name, worker_url
from soak.gate import GONE, HUNG, PAUSED, RUNNING
from soak.instrument import load_worker
from soak.records import Records, Worker


class CountingHandler(logging.Handler):
    """examples/worker.py logs every lost task and failed scrape: counted by logger and level, not printed."""

    def __init__(self, records: Records) -> None:
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.count(f"worker_log_{record.name}_{record.levelname.lower()}")


class Container:
    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.up = False
        self.epoch = 0  # bumped by every crash: restarts scheduled before it are void
        self.numbers = itertools.count(1)


class Fleet:
    def __init__(self, url: str, config: SoakConfig, records: Records, rng: random.Random,
                 address_ids: dict[str, int]) -> None:
        self.url, self.config, self.records, self.rng, self.address_ids = url, config, records, rng, address_ids
        self.by_dsn: dict[str, Worker] = {}
        self.module = load_worker(self.by_dsn, records)
        # examples/worker.py's log, and psycopg's ("error ignored in rollback" of a killed connection).
        self.log_handler = CountingHandler(records)
        self.logs = [(logging.getLogger(name), logging.getLogger(name).level) for name in ("worker", "psycopg")]
        for log, _ in self.logs:
            log.addHandler(self.log_handler)
            log.propagate = False
            log.setLevel(logging.INFO)
        self.containers = {f"c{i}": Container(f"c{i}") for i in range(1, config.containers + 1)}
        self.threads: list[threading.Thread] = []
        self.timers: list[threading.Timer] = []
        self.running = True
        self.lock = threading.Lock()
        self._admin_lock = threading.Lock()
        self._admin_connected_at = time.time()
        self._admin = psycopg.connect(url, autocommit=True, application_name="soak:admin")

    def admin(self, query: str, params: object = None) -> list[tuple]:
        """A statement on the supervisor's own connection. One lost to a server crash is sent again, on a new
        connection, once the server is back: release_container_proxies may run twice, and the faults'
        statements come from the thread that crashes the server, so never span a crash."""
        with self._admin_lock:
            try:
                return self._admin_execute(query, params)
            except psycopg.OperationalError:
                if not self.records.lost_to_server_crash(self._admin_connected_at):
                    raise
            self._admin.close()
            self.records.server_up.wait(60)
            return self._admin_execute(query, params)

    def _admin_execute(self, query: str, params: object) -> list[tuple]:
        if self._admin.closed:
            self._admin_connected_at = time.time()
            self._admin = psycopg.connect(self.url, autocommit=True, application_name="soak:admin")
        return self._admin.execute(query, params).fetchall()

    # -- containers and workers ------------------------------------------------------------------

    def start(self) -> None:
        for container in self.containers.values():
            self.start_container(container)

    def start_container(self, container: Container) -> None:
        """What a container does on start-up (README): free its own proxies, then start its workers."""
        with self.lock:
            if not self.running:
                return
            freed = self.admin("SELECT release_container_proxies(%s)", (container.container_id,))[0][0]
            self.records.count("container_startup_freed", freed)
            container.up = True
            for n in range(1, self.config.workers_per_container + 1):
                self._start_worker(container, f"{container.container_id}/{n}")

    def _start_worker(self, container: Container, slot: str) -> None:
        worker_id = f"{container.container_id}_{next(container.numbers)}"  # a new id for every new process
        worker = self.records.add_worker(worker_id, container.container_id, slot)
        dsn = worker_url(self.url, worker_id, self.config)
        self.by_dsn[dsn] = worker
        thread = threading.Thread(target=self._run, args=(worker, dsn), name=worker_id, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, worker: Worker, dsn: str) -> None:
        try:
            self.module.run_worker(dsn, worker.worker_id, self.scrape, stop=worker.stop,
                                   heartbeat_every=self.config.heartbeat_every, idle_wait=self.config.idle_wait)
            self.records.stopped_cleanly.add(worker.worker_id)  # it returns only once stopped (shutdown)
        except Exception as exc:  # noqa: BLE001 - the worker's process crashed, or a fault killed it
            with self.records.lock:
                killed = worker.dying or worker.status == "dead"  # the fault that did it records the death
            if killed or not self.running:
                return
            worker.gate.set(GONE)
            worker.gate.quiesce()
            if self.records.died(worker, time.time(), f"crashed: {type(exc).__name__}"):
                cause = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
                with self.records.lock:
                    self.records.crash_causes[cause] += 1
                    if cause not in self.records.crash_tracebacks:
                        self.records.crash_tracebacks[cause] = "".join(traceback.format_exception(exc))
                self.records.count("worker_crashes")
                self.restart_later(self.containers[worker.container], worker.slot)

    def restart_later(self, container: Container, slot: str) -> None:
        """The supervisor starts a new worker in the dead one's slot after a while."""
        epoch = container.epoch

        def restart() -> None:
            with self.lock:
                if self.running and container.up and container.epoch == epoch:
                    self.records.count("worker_restarts")
                    self._start_worker(container, slot)

        self._later(self.rng.uniform(*self.config.restart_after), restart)

    def _later(self, seconds: float, action) -> None:  # noqa: ANN001
        def run() -> None:  # a Timer's exception would only reach threading.excepthook, and the run pass
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - recorded: the run then counts as failed
                self.records.error(f"{getattr(action, '__name__', action)} failed: {type(exc).__name__}: {exc}")

        timer = threading.Timer(seconds, run)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    # -- what faults do to them ------------------------------------------------------------------

    def terminate(self, worker_ids: list[str], one: bool = False) -> int:
        """pg_terminate_backend of the workers' connections (one of them, at random, with one=True)."""
        names = [application_name(w) for w in worker_ids]
        pids = [pid for (pid,) in self.admin(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,))]
        if one and pids:
            pids = [self.rng.choice(pids)]
        return self.admin("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) pid",
                          (pids,))[0][0]

    def kill(self, workers: list[Worker], state: str, cause: str) -> None:
        """The workers stop without releasing: hung (connections stay, idle) or gone (connections killed)."""
        with self.records.lock:
            for worker in workers:
                worker.dying = True
        for worker in workers:
            worker.gate.set(state)
        if state == GONE:
            self.terminate([w.worker_id for w in workers])
        for worker in workers:
            if not worker.gate.quiesce():
                self.records.error(f"{worker.worker_id}: a statement still in flight 10 s after it was killed")
            self.records.died(worker, time.time(), cause)

    def stop_worker(self, worker: Worker) -> None:
        with self.records.lock:  # workers are added by other threads meanwhile
            hung = sum(1 for w in self.records.workers.values() if w.gate.state == HUNG)
        self.kill([worker], HUNG if hung < self.config.max_hung_workers and self.rng.random() < 0.5 else GONE,
                  "stopped")
        self.restart_later(self.containers[worker.container], worker.slot)

    def pause_worker(self, worker: Worker) -> float:
        worker.gate.set(PAUSED)
        if not worker.gate.quiesce():
            self.records.error(f"{worker.worker_id}: a statement still in flight 10 s after it was paused")
        self.records.paused(worker, time.time())
        seconds = self.rng.uniform(*self.config.pause_seconds)

        def resume() -> None:
            if worker.gate.state == PAUSED:
                self.records.resumed(worker, time.time())
                worker.gate.set(RUNNING)

        self._later(seconds, resume)
        return seconds

    def crash_container(self, container: Container) -> None:
        with self.lock:
            container.up = False
            container.epoch += 1
        members = [w for w in list(self.records.workers.values())
                   if w.container == container.container_id and w.status != "dead"]
        self.kill(members, GONE, "container crashed")
        self._later(self.rng.uniform(*self.config.restart_after), lambda: self.start_container(container))

    # -- the work ---------------------------------------------------------------------------------

    def scrape(self, task: dict, address: str) -> None:
        worker = self.records.workers[task["worker_id"]]
        if address not in self.address_ids:
            self.records.error(f"{worker.worker_id} was given an unknown address {address!r}")
        worker.gate.sleep(self.rng.uniform(*self.config.scrape_seconds))
        self.records.count("scrapes")
        if worker.ban_next or self.rng.random() < self.config.ban_probability:
            worker.ban_next = False
            self.records.count("bans_raised")
            cooldown = timedelta(seconds=self.rng.uniform(*self.config.cooldown_seconds))
            raise self.module.Banned(f"HTTP 403 (soak, task {task['table']}/{task['id']})", cooldown)

    # -- the end ----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        with self.lock:
            self.running = False
        for timer in self.timers:
            timer.cancel()
        for worker in list(self.records.workers.values()):
            worker.stop.set()
            worker.gate.shutdown()
        deadline = time.monotonic() + 30
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            self.records.error(f"worker threads still running after shutdown: {alive[:10]}")
        self._admin.close()
        for log, level in self.logs:
            log.removeHandler(self.log_handler)
            log.propagate = True
            log.setLevel(level)
