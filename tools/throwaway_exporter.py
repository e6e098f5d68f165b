"""A throwaway postgres_exporter (Debian's prometheus-postgres-exporter) for the tests (docs/monitoring.md).

It listens on a free port on localhost, reads one database with monitoring/postgres_exporter.yml (or
the queries file it is given) and nothing of its own (--disable-default-metrics,
--disable-settings-metrics), and is scraped over HTTP as Prometheus would. It should not run as root,
and CI runs as root: then it runs as the unprivileged ``postgres`` OS user (override with
PROXY_LEASES_PG_OS_USER, as for the server), from a temporary directory that user owns.

    with ThrowawayExporter("postgresql://monitor@127.0.0.1:5432/fleet?sslmode=disable") as exporter:
        exporter.samples()["proxy_leases_pool_free"]   # {(): 29.0}; labels as sorted (name, value) pairs
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tools.throwaway_postgres import free_port, hand_over, stop_process, unprivileged_user

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "monitoring" / "postgres_exporter.yml"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def find_exporter() -> str:
    """POSTGRES_EXPORTER when it is set, else Debian's prometheus-postgres-exporter, else postgres_exporter."""
    for candidate in (os.environ.get("POSTGRES_EXPORTER"), "prometheus-postgres-exporter", "postgres_exporter"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise RuntimeError("no postgres_exporter found: apt-get install prometheus-postgres-exporter "
                       "(or set POSTGRES_EXPORTER=/path/to/postgres_exporter)")


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """Prometheus's text format: {metric: {((label, value), ...): sample}}."""
    samples: dict[str, dict[tuple, float]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            key = tuple(sorted(LABEL.findall(labels or "")))
            samples.setdefault(name, {})[key] = float(value)
    return samples


@dataclass
class ThrowawayExporter:
    dsn: str
    queries: Path = QUERIES

    def __post_init__(self) -> None:
        self.binary = find_exporter()
        self.port = free_port()
        self.os_user = unprivileged_user()
        self.process: subprocess.Popen | None = None
        self.workdir = ""

    def start(self) -> "ThrowawayExporter":
        self.workdir = tempfile.mkdtemp(prefix="proxy-leases-exporter-")
        queries = os.path.join(self.workdir, "queries.yml")
        shutil.copyfile(self.queries, queries)
        as_user = hand_over(self.os_user, self.workdir, queries)
        env = {"PATH": "/usr/bin:/bin", "DATA_SOURCE_NAME": self.dsn, "HOME": self.workdir}
        with open(os.path.join(self.workdir, "exporter.log"), "w") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--web.listen-address=127.0.0.1:{self.port}", f"--extend.query-path={queries}",
                 "--disable-default-metrics", "--disable-settings-metrics"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=self.workdir, **as_user)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.scrape()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log()
                    self.stop()
                    raise RuntimeError(f"postgres_exporter did not serve on port {self.port}:\n{log}") from None
                time.sleep(0.05)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            return response.read().decode()

    def samples(self) -> dict[str, dict[tuple, float]]:
        return parse(self.scrape())

    def log(self) -> str:
        try:
            return Path(self.workdir, "exporter.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.process)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""

    def __enter__(self) -> "ThrowawayExporter":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
