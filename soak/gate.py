"""A worker's process, as its threads see it: running, paused (every thread frozen, connections open),
hung (stopped for good, connections left open and idle) or gone (stopped, connections closed).

Every statement a worker sends passes its gate (soak/instrument.py), so a paused or dead worker sends
nothing, whichever of its threads tries. A statement already in flight when the gate closes finishes
(or is killed with its connection); quiesce() waits for that, so that "dead since" means "can no longer
change the database".
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psycopg

RUNNING, PAUSED, HUNG, GONE = "running", "paused", "hung", "gone"


class WorkerGone(psycopg.OperationalError):
    """What a thread of a dead worker gets instead of a database: as if its connection had been lost."""


class Gate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.state = RUNNING
        self._inflight = 0
        self._shutdown = False

    def _wait_runnable(self) -> None:  # with self._cond held
        while not self._shutdown and self.state in (PAUSED, HUNG):
            self._cond.wait()
        if self.state != RUNNING:
            raise WorkerGone(f"the worker is {self.state}")

    @contextmanager
    def statement(self):
        with self._cond:
            self._wait_runnable()
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def passing(self) -> None:
        """Blocks while paused or hung; raises WorkerGone once gone."""
        with self._cond:
            self._wait_runnable()

    def sleep(self, seconds: float) -> None:
        """The scrape's own time: a paused worker's scrape pauses, a dead worker's never ends."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while True:
                self._wait_runnable()
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def set(self, state: str) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()

    def quiesce(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
