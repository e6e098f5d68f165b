"""A scraper worker on the proxy-leases API. Copy it and pass your own scrape to run_worker.

    DSN=postgresql://scraper@db.internal/fleet WORKER_ID=8b4f59aa_1 python examples/worker.py  # psycopg >= 3.2
"""

import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger("worker")

TABLES = ("catalog_tasks", "object_tasks")
# The claim sets heartbeat_at: requeue_stale_tasks() counts a task in processing without one as stale.
CLAIM = """UPDATE {t} SET status = 'processing', worker_id = %s, heartbeat_at = now()
            WHERE id = (SELECT id FROM {t} WHERE status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING *"""
# Every later write checks that the task is still ours: it may have been requeued and claimed again.
MINE = " WHERE id = %s AND worker_id = %s AND status = 'processing'"
TOUCH = "UPDATE {t} SET heartbeat_at = now()" + MINE
FINISH = "UPDATE {t} SET status = %s" + MINE
REQUEUE = "UPDATE {t} SET status = 'pending', worker_id = NULL" + MINE
ACQUIRE = "SELECT proxy_id, address, lease_token FROM acquire_proxy(%s)"


class Banned(Exception):
    """Raised by a scrape when the site banned the proxy. cooldown=None blocks it until unblock_proxy()."""

    def __init__(self, reason: str, cooldown: timedelta | None = None):
        super().__init__(reason)
        self.reason, self.cooldown = reason, cooldown


def run_worker(dsn, worker_id, scrape, *, stop: threading.Event | None = None,
               heartbeat_every: float = 30, idle_wait: float = 5) -> None:
    """Claim a task, lease a proxy, scrape, settle; again, until `stop` is set."""
    stop = stop or threading.Event()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            task = claim_task(conn, worker_id)
            if task is None:
                stop.wait(idle_wait)  # new tasks are not announced: look again later
            elif grant := wait_for_proxy(conn, worker_id, task, stop, idle_wait):
                work(conn, dsn, worker_id, task, grant, scrape, stop, heartbeat_every)
            else:  # stopping, or the task was taken from us while we waited
                settle(conn, worker_id, task, None, (), "pending")


def claim_task(conn, worker_id):
    for table in TABLES:
        if row := conn.cursor(row_factory=dict_row).execute(CLAIM.format(t=table), (worker_id,)).fetchone():
            return {**row, "table": table}
    return None


def wait_for_proxy(conn, worker_id, task, stop, idle_wait):
    if grant := conn.execute(ACQUIRE, (worker_id,)).fetchone():
        return grant
    # LISTEN, then try again: a proxy freed after the first try is either found by the retry or announced to us.
    conn.execute("LISTEN proxy_available")
    touch = TOUCH.format(t=task["table"])
    try:  # each round touches the task too: it must stay alive while we wait, and still be ours
        while not stop.is_set() and conn.execute(touch, (task["id"], worker_id)).rowcount:
            if grant := conn.execute(ACQUIRE, (worker_id,)).fetchone():
                return grant
            # Any freed proxy is worth a try; the timeout bounds how late we see `stop`.
            for _ in conn.notifies(timeout=idle_wait, stop_after=1):
                pass
        return None
    finally:
        conn.execute("UNLISTEN proxy_available")


def work(conn, dsn, worker_id, task, grant, scrape, stop, heartbeat_every):
    proxy_id, address, token = grant
    finished, lost, outcome = threading.Event(), threading.Event(), {}

    def call_scrape():
        try:
            scrape(task, address)
        except Exception as exc:
            outcome["error"] = exc

    def heartbeat():  # on a connection of its own: threads never share one, nor its transactions
        try:
            with psycopg.connect(dsn, autocommit=True) as beat:
                while not finished.wait(heartbeat_every):
                    # The lease first: a grant that is gone must stop the work before we vouch for the task.
                    beat.execute("SELECT renew_proxy_lease(%s, %s)", (proxy_id, token))  # LP001 once it is gone
                    if not beat.execute(TOUCH.format(t=task["table"]), (task["id"], worker_id)).rowcount:
                        raise LookupError("the task is no longer ours")
        except Exception as exc:  # LP001, the task taken away, the database out of reach: in doubt, lost
            log.warning("%s lost task %s: %s", worker_id, task["id"], exc)
            lost.set()

    # The scrape runs in a thread of its own so that a stop is honoured at once, however long it takes.
    scraper = threading.Thread(target=call_scrape, daemon=True)
    beating = threading.Thread(target=heartbeat, daemon=True)
    scraper.start()
    beating.start()
    # Abandoned on `stop`, as the process exits; never on a lost lease: two scrapes at once need two proxies.
    while scraper.is_alive() and not stop.is_set():
        scraper.join(0.2)
    finished.set()
    beating.join()

    error = outcome.get("error")
    if scraper.is_alive() or lost.is_set():
        log.info("%s gives task %s back", worker_id, task["id"])
        settle(conn, worker_id, task, "release_proxy(%s, %s)", (proxy_id, token), "pending")
    elif isinstance(error, Banned):
        log.warning("%s: proxy %s banned: %s", worker_id, proxy_id, error.reason)
        settle(conn, worker_id, task, "block_proxy(%s, %s, %s, %s)",
               (proxy_id, token, error.reason, error.cooldown), "pending")
    else:
        if error:
            log.error("%s: task %s failed", worker_id, task["id"], exc_info=error)
        settle(conn, worker_id, task, "release_proxy(%s, %s)", (proxy_id, token), "failed" if error else "done")


def settle(conn, worker_id, task, proxy_call, params, status):
    # The proxy first: a task sent back to pending while its worker holds a proxy is a strike against it.
    # A fenced call that finds the lease gone means someone else may have used the proxy: the work does
    # not count, and the task goes back to pending.
    with conn.transaction():
        if proxy_call and not conn.execute(f"SELECT {proxy_call}", params).fetchone()[0]:
            status = "pending"
        if status == "pending":
            conn.execute(REQUEUE.format(t=task["table"]), (task["id"], worker_id))
        else:
            conn.execute(FINISH.format(t=task["table"]), (status, task["id"], worker_id))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    # Set from another thread: inside the handler, stop.set() could deadlock on the lock stop.wait() holds.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=stop.set).start())
    seconds = float(os.environ.get("DEMO_SCRAPE_SECONDS", "1"))

    def demo_scrape(task, proxy_address):
        log.info("task %s/%s through %s", task["table"], task["id"], proxy_address)
        time.sleep(seconds)

    run_worker(os.environ["DSN"], os.environ["WORKER_ID"], demo_scrape, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
