"""examples/worker.py, unchanged, with its connections observed and gated.

The documented worker (examples/worker.py, docs/worker.md) is the contract, so the soak runs that very
file: it is loaded as a module of its own and its `psycopg` name is pointed at a shim whose connect()
returns an ObservedConnection. Nothing in run_worker changes. Each statement of a worker
  - passes the worker's gate first: a paused or dead worker sends nothing (soak/gate.py);
  - is observed: what acquire_proxy granted (and when it was asked), which renew_proxy_lease,
    release_proxy and block_proxy calls succeeded and which were fenced out, the leased_until a
    renewal returned, and when each statement was sent and came back (soak/records.py: the checker's
    I6 bounds a lease end by the worker's last statement). Results are read and the cursor rewound,
    so the worker reads them as if nobody had looked.
The commit of a transaction block passes the gate too: a worker frozen inside settle()'s transaction
stays idle in it, as a frozen process would.
"""

from __future__ import annotations

import importlib.util
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from soak.records import Records, Worker

WORKER_FILE = Path(__file__).resolve().parent.parent / "examples" / "worker.py"


class ObservedCursor(psycopg.Cursor):
    def execute(self, query, params=None, **kwargs):  # noqa: ANN001 - psycopg's signature
        worker: Worker = self.connection.soak_worker
        records: Records = self.connection.soak_records
        text = query if isinstance(query, str) else str(query)
        with worker.gate.statement():
            sent, ok = time.time(), False
            quiet_since = records.statement_sent(worker)
            try:
                self._observed(records, worker, text, query, params, sent, quiet_since, **kwargs)
                ok = True
            finally:
                records.statement_done(worker, time.time(), ok, sent)
        return self

    def _observed(self, records: Records, worker: Worker, text: str, query, params, sent: float,  # noqa: ANN001
                  quiet_since: float | None, **kwargs) -> None:
        try:
            super().execute(query, params, **kwargs)
        except psycopg.Error as exc:
            if "renew_proxy_lease(" in text and exc.sqlstate == "LP001":
                records.on_fenced(worker, "renew", params[0], params[1], sent, False, replied_at=time.time(),
                                  quiet_since=quiet_since)
            raise
        replied = time.time()
        if "FROM acquire_proxy(" in text:
            row = self._peek()
            if row is not None:
                records.on_acquire(worker, row[0], row[2], replied, asked_at=sent)
        elif "renew_proxy_lease(" in text:
            row = self._peek()
            returned = row[0].timestamp() if row is not None and row[0] is not None else None
            records.on_fenced(worker, "renew", params[0], params[1], sent, True, replied_at=replied,
                              quiet_since=quiet_since, returned=returned)
        elif "release_proxy(" in text or "block_proxy(" in text:
            row = self._peek()
            if row is None:  # never seen; counted so that it would show
                records.count("fenced_call_without_result")
            else:
                records.on_fenced(worker, "release" if "release_proxy(" in text else "block",
                                  params[0], params[1], sent, bool(row[0]), replied_at=replied,
                                  quiet_since=quiet_since)

    def _peek(self) -> Any:
        if self.pgresult is None or self.pgresult.ntuples == 0:
            return None
        row = self.fetchone()
        self.scroll(0, mode="absolute")
        return row


class ObservedConnection(psycopg.Connection):
    soak_worker: Worker
    soak_records: Records

    @contextmanager
    def transaction(self, *args, **kwargs):
        # The COMMIT is a statement too: a paused or dead worker does not send it, and one in flight
        # counts, so that "silent since" holds for it as for the statements before it.
        block = super().transaction(*args, **kwargs)
        tx = block.__enter__()
        try:
            yield tx
        except BaseException as exc:
            if not block.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            with self.soak_worker.gate.statement():
                sent, ok = time.time(), False
                self.soak_records.statement_sent(self.soak_worker)
                try:
                    block.__exit__(None, None, None)
                    ok = True
                finally:
                    self.soak_records.statement_done(self.soak_worker, time.time(), ok, sent)


class _PsycopgShim:
    """Stands for the psycopg module inside examples/worker.py: connect() is observed, the rest is psycopg."""

    def __init__(self, connect) -> None:  # noqa: ANN001
        self.connect = connect

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


def load_worker(workers_by_dsn: dict[str, Worker], records: Records):
    """examples/worker.py as a module whose connections belong to the worker their DSN names."""
    spec = importlib.util.spec_from_file_location("soak_example_worker", WORKER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def connect(dsn: str, **kwargs: Any) -> ObservedConnection:
        worker = workers_by_dsn[dsn]
        worker.gate.passing()  # a paused or dead worker opens no connection either
        conn = ObservedConnection.connect(dsn, cursor_factory=ObservedCursor, **kwargs)
        conn.soak_worker, conn.soak_records = worker, records
        return conn

    module.psycopg = _PsycopgShim(connect)
    return module
