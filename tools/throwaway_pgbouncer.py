"""A throwaway PgBouncer in front of a PostgreSQL server, for the tests (see docs/pgbouncer.md).

It listens on a free port on localhost, forwards every database name to the server (a ``*``
entry), and lets the users it is given in with ``auth_type = trust``: the server behind it is a
throwaway one with trust auth too (tools/throwaway_postgres.py). PgBouncer refuses to run as root,
and CI runs as root: then it runs as the unprivileged ``postgres`` OS user (override with
PROXY_LEASES_PG_OS_USER, as for the server), and its configuration, user list and log live in a
temporary directory that user owns.

    with ThrowawayPgBouncer(server_port=5432, users=("postgres", "scraper")) as bouncer:
        bouncer.url("fleet", "scraper")      # postgresql://scraper@127.0.0.1:<port>/fleet
        bouncer.admin("SHOW POOLS")           # the admin console, as a list of dicts
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from tools.throwaway_postgres import free_port, hand_over, stop_process, unprivileged_user


def find_pgbouncer() -> str:
    """PGBOUNCER when it is set, else pgbouncer on PATH, else Debian's /usr/sbin/pgbouncer."""
    if os.environ.get("PGBOUNCER"):
        found = shutil.which(os.environ["PGBOUNCER"])
        if not found:
            raise RuntimeError(f"PGBOUNCER={os.environ['PGBOUNCER']} is not an executable")
        return found
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("no pgbouncer found: apt-get install pgbouncer (or set PGBOUNCER=/path/to/pgbouncer)")
    return found


@dataclass
class ThrowawayPgBouncer:
    server_port: int
    server_host: str = "127.0.0.1"
    users: tuple[str, ...] = ("postgres",)
    pool_mode: str = "transaction"
    # Server connections per (database, user). 1 makes every client of a pair share one backend.
    default_pool_size: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    # Extra [pgbouncer] settings, e.g. ("max_prepared_statements = 100",); later ones win.
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.binary = find_pgbouncer()
        self.port = self.port or free_port()
        self.os_user = unprivileged_user()
        self.process: subprocess.Popen | None = None
        self.workdir = ""

    def start(self) -> "ThrowawayPgBouncer":
        self.workdir = tempfile.mkdtemp(prefix="proxy-leases-pgbouncer-")
        auth_file = os.path.join(self.workdir, "userlist.txt")
        config = os.path.join(self.workdir, "pgbouncer.ini")
        with open(auth_file, "w") as out:
            # trust still requires the user to be listed; the password is not checked.
            out.writelines(f'"{user}" ""\n' for user in self.users)
        lines = [
            "[databases]",
            f"* = host={self.server_host} port={self.server_port}",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {auth_file}",
            f"admin_users = {self.users[0]}",
            f"stats_users = {', '.join(self.users)}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.default_pool_size}",
            "max_client_conn = 500",
            # The default waits 15 s after a failed server login before trying again.
            "server_login_retry = 1",
            f"logfile = {os.path.join(self.workdir, 'pgbouncer.log')}",
            *self.settings,
        ]
        with open(config, "w") as out:
            out.write("\n".join(lines) + "\n")
        as_user = hand_over(self.os_user, self.workdir, auth_file, config)
        with open(os.path.join(self.workdir, "stderr.log"), "w") as stderr:
            self.process = subprocess.Popen([self.binary, config], stdin=subprocess.DEVNULL,
                                            stdout=stderr, stderr=stderr, **as_user)
        self._wait_until_accepting()
        return self

    def _wait_until_accepting(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = self.log()
                self.stop()
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}:\n{log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    log = self.log()
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not listen on port {self.port}:\n{log}")
                time.sleep(0.02)

    def log(self) -> str:
        text = []
        for name in ("stderr.log", "pgbouncer.log"):
            try:
                with open(os.path.join(self.workdir, name), encoding="utf-8", errors="replace") as log:
                    text.append(log.read())
            except OSError:
                pass
        return "".join(text)

    def stop(self) -> None:
        stop_process(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""

    def url(self, dbname: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.users[0]}@{self.host}:{self.port}/{dbname}"

    def admin(self, command: str) -> list[dict]:
        """A SHOW command on the admin console (database pgbouncer), as a list of rows."""
        # The console speaks only the simple query protocol: psycopg uses it for a query without
        # parameters once prepare_threshold is None.
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.cursor(row_factory=dict_row)
            cursor.execute(command)
            return cursor.fetchall()

    def __enter__(self) -> "ThrowawayPgBouncer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
