"""A scraper worker on the proxy-leases API in asyncio and asyncpg: the twin of examples/worker.py,
shaped like the fleet's BrowserWorker. Copy it and pass your own async scrape to BrowserWorker.

    DSN=postgresql://scraper@db.internal/fleet WORKER_ID=8b4f59aa_1 python examples/async_worker.py  # asyncpg >= 0.30

Behind PgBouncer in transaction pooling mode (docs/pgbouncer.md), the API calls go through PgBouncer
and LISTEN goes straight to PostgreSQL:

    DSN=postgresql://scraper@pgbouncer.internal:6432/fleet PGBOUNCER=1 \\
    LISTEN_DSN=postgresql://scraper@db.internal:5432/fleet WORKER_ID=8b4f59aa_1 python examples/async_worker.py

Optional: HEARTBEAT_SECONDS (30), IDLE_WAIT_SECONDS (5), LEASE_SECONDS (the database's lease_duration),
DEMO_SCRAPE_SECONDS (1). SIGTERM stops the worker, SIGINT cancels it: either way it gives back its
proxy and its unfinished task, and exits 0.
"""

import asyncio
import logging
import os
import random
import signal
import sys
from datetime import timedelta

import asyncpg

log = logging.getLogger("async_worker")

TABLES = ("catalog_tasks", "object_tasks")
# The claim sets heartbeat_at: requeue_stale_tasks() counts a task in processing without one as stale.
CLAIM = """UPDATE {t} SET status = 'processing', worker_id = $1, heartbeat_at = now()
            WHERE id = (SELECT id FROM {t} WHERE status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING *"""
# Every later write checks that the task is still ours: it may have been requeued and claimed again.
MINE = " WHERE id = $1 AND worker_id = $2 AND status = 'processing'"
TOUCH = "UPDATE {t} SET heartbeat_at = now()" + MINE
FINISH = "UPDATE {t} SET status = $3" + MINE
REQUEUE = "UPDATE {t} SET status = 'pending', worker_id = NULL" + MINE
# Intervals (the lease, a ban's cooldown) are passed as datetime.timedelta, which asyncpg sends as an
# interval. None is NULL: the configured lease_duration for a lease, no end for a cooldown.
ACQUIRE = "SELECT proxy_id, address, lease_token FROM acquire_proxy($1, $2)"
RENEW = "SELECT renew_proxy_lease($1, $2, $3)"  # LP001 once the grant no longer holds
RELEASE = "SELECT release_proxy($1, $2)"
BLOCK = "SELECT block_proxy($1, $2, $3, $4)"
CHANNEL = "proxy_available"
# A heartbeat or a listener ping that takes longer than this: the database is out of reach.
CALL_TIMEOUT = 10.0


class Banned(Exception):
    """Raised by a scrape when the site banned the proxy. cooldown=None blocks it until unblock_proxy()."""

    def __init__(self, reason: str, cooldown: timedelta | None = None):
        super().__init__(reason)
        self.reason, self.cooldown = reason, cooldown


def updated(status: str) -> int:
    """The rows an UPDATE changed, from asyncpg's command tag ('UPDATE 1')."""
    return int(status.rsplit(" ", 1)[1])


async def keep_session(conn) -> None:
    """The pool's reset behind PgBouncer. asyncpg rolls back an open transaction first in any case.
    Its default reset (pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL) cleans up a session
    of our own; behind transaction pooling it would run, as one more transaction per call, on
    whichever server connection PgBouncer picks, where nothing is ours: the lease API keeps no
    session state (docs/pgbouncer.md)."""


def pool_options(application_name: str, pgbouncer: bool) -> dict:
    # Two connections: the worker's calls, and its heartbeat's while a scrape runs.
    options = {"min_size": 2, "max_size": 2, "server_settings": {"application_name": application_name}}
    if pgbouncer:
        # PgBouncer in transaction mode gives each transaction whichever server connection is free.
        # asyncpg's statement cache keeps named prepared statements, and those live in one server
        # session: a later transaction lands on a server that lacks them ("prepared statement
        # __asyncpg_stmt_1__ does not exist") or where another client prepared one of the same name
        # ("already exists"). Without the cache asyncpg uses the unnamed statement, parsed, bound and
        # run in one exchange with no Sync in between, so it never outlives its transaction.
        # PgBouncer >= 1.21 with max_prepared_statements > 0 tracks named statements itself; then
        # the cache may stay on.
        options["statement_cache_size"] = 0
        options["reset"] = keep_session
    return options


class Listener:
    """LISTEN proxy_available on a connection of its own, straight to PostgreSQL, reconnected when it drops.

    Never through PgBouncer's transaction pooling: a LISTEN belongs to the server session that ran
    it, which PgBouncer hands to other clients between transactions; the notifications would go to
    them, or to nobody. A waiter calls expect() before it looks for a proxy: the event it gets is set
    by every notification from then on, and by every reconnection, since a proxy freed while nobody
    listened was announced to nobody. Several BrowserWorkers of one container may share one Listener.
    """

    def __init__(self, dsn: str, application_name: str, *, first_retry: float = 0.5,
                 max_retry: float = 30.0, ping_every: float = 30.0):
        self.dsn, self.application_name = dsn, application_name
        self.first_retry, self.max_retry, self.ping_every = first_retry, max_retry, ping_every
        self._waiters: set[asyncio.Event] = set()
        self.tried = asyncio.Event()  # set once the first connection listens, or failed

    def expect(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def _wake(self, *_notification) -> None:
        for event in self._waiters:
            event.set()

    async def run(self) -> None:
        """Listen until cancelled; after a drop, reconnect with exponential backoff and jitter."""
        delay = self.first_retry
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CALL_TIMEOUT,
                                             server_settings={"application_name": self.application_name})
            except Exception as exc:  # the server down or restarting, the network, too many connections
                log.warning("%s: cannot connect: %s", self.application_name, exc)
            else:
                if await self._listen(conn):
                    delay = self.first_retry  # it was listening: start the backoff afresh
            self.tried.set()
            # Jitter: a server that comes back is not hit by every worker of the fleet at once.
            pause = delay * random.uniform(0.5, 1.0)
            log.warning("%s: reconnecting in %.2f s", self.application_name, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self.max_retry)

    async def _listen(self, conn) -> bool:
        """LISTEN on conn until the connection is lost; whether it got as far as listening."""
        lost = asyncio.Event()
        # Called when the connection closes for any reason: the server terminated the backend or
        # restarted, the socket was reset. asyncpg reads the socket even while no query runs.
        conn.add_termination_listener(lambda _conn: lost.set())
        listening = False
        try:
            await conn.add_listener(CHANNEL, self._wake)
            listening = True
            log.info("%s: listening on %s (server pid %s)", self.application_name, CHANNEL, conn.get_server_pid())
            self.tried.set()
            self._wake()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.ping_every)
                except asyncio.TimeoutError:
                    # A server gone without closing the connection (host down, a NAT entry dropped)
                    # shows up only when we write to it.
                    await conn.execute("SELECT 1", timeout=CALL_TIMEOUT)
            log.warning("%s: connection lost", self.application_name)
        except Exception as exc:
            log.warning("%s: connection lost: %s", self.application_name, exc)
        finally:
            conn.terminate()
        return listening


class BrowserWorker:
    """Claim a task, lease a proxy, scrape, settle; again, until stop() or cancellation.

    scrape is `async def scrape(task, proxy_address)`; it raises Banned when the site banned the proxy.
    """

    def __init__(self, dsn: str, worker_id: str, scrape, *, listen_dsn: str | None = None,
                 pgbouncer: bool = False, listener: Listener | None = None,
                 heartbeat_every: float = 30, idle_wait: float = 5, lease: timedelta | None = None):
        self.dsn, self.worker_id, self.scrape, self.pgbouncer = dsn, worker_id, scrape, pgbouncer
        self.heartbeat_every, self.idle_wait, self.lease = heartbeat_every, idle_wait, lease
        self.own_listener = listener is None
        self.listener = listener or Listener(listen_dsn or dsn, f"async_worker {worker_id} listen")
        self.should_stop = asyncio.Event()
        self.pool = None
        self.task = self.grant = None  # what cleanup() gives back
        self._taking = None  # the claim or acquire_proxy call in flight

    def stop(self) -> None:
        """Give back what is held and return from run(), as soon as possible (SIGTERM)."""
        self.should_stop.set()

    async def run(self) -> None:
        async with asyncpg.create_pool(self.dsn, **pool_options(f"async_worker {self.worker_id}",
                                                                self.pgbouncer)) as self.pool:
            listening = asyncio.create_task(self.listener.run()) if self.own_listener else None
            try:
                # Listening before the first look for a proxy; without a listener, waits end on their timeout.
                await self.pause(CALL_TIMEOUT, self.listener.tried)
                while not self.should_stop.is_set():
                    task = await self.taking(self.claim_task())
                    if task is None:
                        await self.pause(self.idle_wait)  # new tasks are not announced: look again later
                    elif grant := await self.wait_for_proxy(task):
                        await self.work(task, grant)
                    else:  # stopping, or the task was taken from us while we waited
                        await self.settle(None, (), "pending")
            finally:  # cancelled, or an error: what we still hold goes back
                await self.cleanup()
                if listening:
                    listening.cancel()
                    await asyncio.gather(listening, return_exceptions=True)

    async def taking(self, call):
        """Await a call that takes something (claim_task, acquire) and records it in self.task or
        self.grant. A cancellation does not interrupt it, as a claim or a grant the database made
        after we stopped reading would stay ours unseen until requeue_stale_tasks or the lease end:
        cleanup() waits for it to end instead, and gives back what it took."""
        self._taking = asyncio.ensure_future(call)
        return await asyncio.shield(self._taking)

    async def cleanup(self) -> None:
        if self._taking is not None and not self._taking.done():
            await asyncio.wait([self._taking], timeout=CALL_TIMEOUT)
        if self.task is None:
            return
        log.info("%s gives task %s back", self.worker_id, self.task["id"])
        try:
            if self.grant:
                await asyncio.wait_for(self.settle(RELEASE, (self.grant["proxy_id"], self.grant["lease_token"]),
                                                   "pending"), CALL_TIMEOUT)
            else:
                await asyncio.wait_for(self.settle(None, (), "pending"), CALL_TIMEOUT)
        except Exception:  # the lease runs out, the sweeper frees the proxy, requeue_stale_tasks the task
            log.exception("%s could not give task %s back", self.worker_id, self.task["id"])

    async def pause(self, seconds: float, *events: asyncio.Event) -> None:
        """Sleep up to `seconds`; wake early on stop() or when one of `events` is set."""
        waits = [asyncio.create_task(event.wait()) for event in (self.should_stop, *events)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def claim_task(self):
        for table in TABLES:
            if row := await self.pool.fetchrow(CLAIM.format(t=table), self.worker_id):
                self.task = dict(row, table=table)
                return self.task
        return None

    async def acquire(self):
        self.grant = await self.pool.fetchrow(ACQUIRE, self.worker_id, self.lease)
        return self.grant

    async def wait_for_proxy(self, task):
        touch = TOUCH.format(t=task["table"])
        while True:
            # From here on, a proxy freed is either found by this call or announced to us.
            woken = self.listener.expect()
            try:
                if grant := await self.taking(self.acquire()):
                    return grant
                log.info("%s waits for a proxy for task %s", self.worker_id, task["id"])
                # Any freed proxy is worth a try; the timeout covers a listener that is reconnecting.
                await self.pause(self.idle_wait, woken)
            finally:
                self.listener.forget(woken)
            # Each round touches the task too: it must stay alive while we wait, and still be ours.
            if self.should_stop.is_set() or not updated(await self.pool.execute(touch, task["id"], self.worker_id)):
                return None

    async def work(self, task, grant) -> None:
        proxy_id, address, token = grant
        scraping = asyncio.create_task(self.scrape(task, address))
        beating = asyncio.create_task(self.heartbeat(task, proxy_id, token))
        stopping = asyncio.create_task(self.should_stop.wait())
        try:
            await asyncio.wait((scraping, beating, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A stop or a lost lease cancels the scrape at once: it must not go on without the proxy.
            # Cancelled from outside, the same, and cleanup() in run() gives back proxy and task.
            for running in (scraping, beating, stopping):
                running.cancel()
            await asyncio.gather(scraping, beating, stopping, return_exceptions=True)

        lost = beating.done() and not beating.cancelled()  # heartbeat() returns only when it lost the lease
        if scraping.cancelled() or lost:
            log.info("%s gives task %s back", self.worker_id, task["id"])
            await self.settle(RELEASE, (proxy_id, token), "pending")
        elif isinstance(error := scraping.exception(), Banned):
            log.warning("%s: proxy %s banned: %s", self.worker_id, proxy_id, error.reason)
            await self.settle(BLOCK, (proxy_id, token, error.reason, error.cooldown), "pending")
        else:
            if error:
                log.error("%s: task %s failed", self.worker_id, task["id"], exc_info=error)
            await self.settle(RELEASE, (proxy_id, token), "failed" if error else "done")

    async def heartbeat(self, task, proxy_id, token) -> None:
        """Renew the lease and the task every heartbeat_every; return only when either is lost."""
        touch = TOUCH.format(t=task["table"])
        try:
            while True:
                await asyncio.sleep(self.heartbeat_every)
                async with self.pool.acquire() as conn:
                    # The lease first: a grant that is gone must stop the work before we vouch for the task.
                    await conn.fetchval(RENEW, proxy_id, token, self.lease, timeout=CALL_TIMEOUT)
                    if not updated(await conn.execute(touch, task["id"], self.worker_id, timeout=CALL_TIMEOUT)):
                        raise LookupError("the task is no longer ours")
        except Exception as exc:  # LP001, the task taken away, the database out of reach: in doubt, lost
            log.warning("%s lost task %s: %s", self.worker_id, task["id"], exc)

    async def settle(self, proxy_call, params, status) -> None:
        # The proxy first: a task sent back to pending while its worker holds a proxy is a strike against it.
        # A fenced call that finds the lease gone means someone else may have used the proxy: the work does
        # not count, and the task goes back to pending.
        task = self.task
        async with self.pool.acquire() as conn, conn.transaction():
            if proxy_call and not await conn.fetchval(proxy_call, *params):
                status = "pending"
            if status == "pending":
                await conn.execute(REQUEUE.format(t=task["table"]), task["id"], self.worker_id)
            else:
                await conn.execute(FINISH.format(t=task["table"]), task["id"], self.worker_id, status)
        self.task = self.grant = None


async def serve(worker: BrowserWorker) -> None:
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(worker.run())
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    loop.add_signal_handler(signal.SIGINT, running.cancel)
    try:
        await running
    except asyncio.CancelledError:  # SIGINT: run() gave back what it held as it was cancelled
        pass


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    seconds = float(os.environ.get("DEMO_SCRAPE_SECONDS", "1"))

    async def demo_scrape(task, proxy_address):
        log.info("task %s/%s through %s", task["table"], task["id"], proxy_address)
        await asyncio.sleep(seconds)

    lease = os.environ.get("LEASE_SECONDS")
    worker = BrowserWorker(os.environ["DSN"], os.environ["WORKER_ID"], demo_scrape,
                           listen_dsn=os.environ.get("LISTEN_DSN"),
                           pgbouncer=os.environ.get("PGBOUNCER", "0") not in ("", "0"),
                           heartbeat_every=float(os.environ.get("HEARTBEAT_SECONDS", "30")),
                           idle_wait=float(os.environ.get("IDLE_WAIT_SECONDS", "5")),
                           lease=timedelta(seconds=float(lease)) if lease else None)
    asyncio.run(serve(worker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
