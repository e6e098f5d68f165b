"""What a soak run is made of: the fleet's shape, the lease settings, the fault rate, and the one place
that says how a worker connects."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg.conninfo import make_conninfo


@dataclass
class SoakConfig:
    seconds: float = 600.0
    containers: int = 3
    workers_per_container: int = 15
    proxies: int = 80
    # proxy_lease_settings, in seconds. orphan_grace must stay below lease_duration (the table's CHECK).
    lease: float = 30.0
    heartbeat_timeout: float = 20.0
    # An operator switches heartbeat_timeout between heartbeat_timeout and this every toggle_every seconds.
    # Below the lease, a dead worker's task is requeued first and the release trigger frees its proxy
    # (reason requeued); above it, the lease runs out first and the sweep frees it (lease_expired). The
    # soak exercises both paths; I3's bound is the same for both.
    long_heartbeat_timeout: float = 45.0
    toggle_every: float = 120.0
    orphan_grace: float = 10.0
    # Who runs the maintenance: "cron" (the pg_cron job the upgrade scheduled, once a minute on pg_cron
    # 1.4) or "thread" (CALL run_lease_maintenance() from a thread every sweep_period seconds).
    sweep: str = "cron"
    sweep_period: float = 60.0
    # run_worker's own knobs.
    heartbeat_every: float = 2.0
    idle_wait: float = 2.0
    # The work: scrape times, and how often a site bans a proxy (Banned with a cooldown).
    scrape_seconds: tuple[float, float] = (0.5, 6.0)
    ban_probability: float = 0.003
    cooldown_seconds: tuple[float, float] = (5.0, 40.0)
    # Faults: one every fault_every seconds (uniform in the range), of a kind drawn with these weights.
    fault_every: tuple[float, float] = (2.0, 5.0)
    fault_weights: dict[str, float] = field(default_factory=lambda: {
        "connection_kill": 3, "worker_stop": 3, "worker_pause": 3, "container_crash": 1, "ban": 2})
    # A stopped or crashed worker (a new worker id) or a crashed container comes back after this long.
    restart_after: tuple[float, float] = (2.0, 10.0)
    # A paused worker (every thread frozen, connections idle) resumes after this long: from well inside its
    # lease to past lease + two sweep periods, so that both "it kept its lease" and "it was fenced out" happen.
    pause_seconds: tuple[float, float] | None = None
    # At most this many stopped workers keep their connections open and idle; the others' go away.
    max_hung_workers: int = 10
    # Server faults (soak/faults.py, server_crash), on a server of the soak's own only: PostgreSQL killed with
    # pg_ctl stop -m immediate and started again on the same data directory after server_down_seconds.
    # server_faults adds them to the random draw with server_crash_weight (with a fault every 2 to 5 s and
    # the other weights summing to 12, one fault in 25: 6 to 11 in 10 minutes here); server_crash_at crashes it
    # at these moments, in seconds into the run, besides.
    server_faults: bool = False
    server_crash_weight: float = 0.5
    server_crash_at: tuple[float, ...] = ()
    server_down_seconds: tuple[float, float] = (0.5, 3.0)
    # examples/async_worker.py's workers beside the fleet, as processes of their own (soak/async_fleet.py).
    async_workers: int = 0
    # An operator unblocks quarantined proxies (blocked with no cooldown) after this long, or the pool
    # would shrink for good over a long run.
    unblock_quarantined_after: float = 30.0
    # Pending tasks kept in each task table.
    pending_tasks: int = 300
    # The checker.
    sample_every: float = 0.15
    # I3's bound is lease + sweep_period + this: the sampling period, the maintenance run's own time and
    # the scheduler's start delay (pg_cron starts a new session at the minute boundary).
    i3_allowance: float = 3.0
    # Sessions of a frozen worker idle inside a transaction hold their proxy row's lock, which the sweeper
    # skips: the fleet must end them. Below the lease, so the sweep after the lease end finds the row unlocked.
    idle_in_transaction_timeout: float = 10.0
    # The login role workers connect as, made a member of proxy_leases_worker and nothing else for the
    # run (docs/operations.md, "Roles and rights"); None: the URL's own role.
    worker_role: str | None = "soak_worker"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.pause_seconds is None:
            self.pause_seconds = (self.lease * 0.3, self.lease + 2 * self.sweep_period)
        if self.server_faults:
            self.fault_weights = {**self.fault_weights, "server_crash": self.server_crash_weight}

    @property
    def crashes_server(self) -> bool:
        return self.server_faults or bool(self.server_crash_at)

    @property
    def workers(self) -> int:
        return self.containers * self.workers_per_container

    @property
    def i3_bound(self) -> float:
        return self.lease + self.sweep_period + self.i3_allowance


def long_config(lease: float = 30.0, **overrides) -> SoakConfig:
    """scripts/soak's run: the timeouts follow the lease as the defaults above do for a 30 s lease."""
    values = dict(
        lease=lease, heartbeat_timeout=round(lease * 2 / 3, 3), long_heartbeat_timeout=lease * 1.5,
        orphan_grace=round(lease / 3, 3), heartbeat_every=max(0.2, lease / 15),
        idle_in_transaction_timeout=max(1.0, lease / 3), scrape_seconds=(0.5, max(1.0, lease / 5)),
    )
    values.update(overrides)
    return SoakConfig(**values)


def short_config(seconds: float = 45.0, **overrides) -> SoakConfig:
    """The test's soak: all 45 workers, a lease of a few seconds, maintenance from a thread every 1.5 s,
    a fault every ~0.5 s."""
    values = dict(
        seconds=seconds, proxies=60, lease=5.0, heartbeat_timeout=3.0, long_heartbeat_timeout=7.5,
        toggle_every=8.0, orphan_grace=2.0,
        sweep="thread", sweep_period=1.5, heartbeat_every=0.5, idle_wait=0.5,
        scrape_seconds=(0.2, 1.0), ban_probability=0.02, cooldown_seconds=(1.0, 3.0),
        fault_every=(0.3, 0.7), restart_after=(0.5, 2.0), unblock_quarantined_after=3.0,
        pending_tasks=200, sample_every=0.15, i3_allowance=1.5, idle_in_transaction_timeout=1.5,
    )
    values.update(overrides)
    return SoakConfig(**values)


def application_name(worker_id: str) -> str:
    """How the fault injector finds a worker's connections in pg_stat_activity."""
    return f"soak:{worker_id}"


def worker_url(base_url: str, worker_id: str, config: SoakConfig) -> str:
    """The one place that says how a worker connects: the fleet's database, as config.worker_role when
    set, named after the worker, with the idle-in-transaction limit a frozen worker needs."""
    extra = {"application_name": application_name(worker_id),
             "options": f"-c idle_in_transaction_session_timeout={int(config.idle_in_transaction_timeout * 1000)}"}
    if config.worker_role:
        extra["user"] = config.worker_role
    return make_conninfo(base_url, **extra)
