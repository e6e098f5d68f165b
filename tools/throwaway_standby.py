"""A throwaway streaming standby of a running ThrowawayPostgres, for the failover test.

A fleet that fails over to a standby needs proof that the leases survive it, which takes a real
standby: `pg_basebackup -R -X stream` from the primary into a temporary directory owned by the server's
OS user, started on a free port with the same binaries and the same server options. Those options
(pg_cron preloaded, `cron.database_name`, the caller's settings) are `pg_ctl -o` arguments, not in
postgresql.conf, so the copy does not inherit them: they are passed again here. `promote()` makes the
standby a primary (the primary's `crash()` kills it the way a crash does). Everything is removed on
exit, as ThrowawayPostgres does.
"""

from __future__ import annotations

from tools.throwaway_postgres import ThrowawayPostgres


class ThrowawayStandby(ThrowawayPostgres):
    """``with ThrowawayStandby(primary) as standby: standby.promote()`` — a hot standby of `primary`."""

    workdir_prefix = "proxy-leases-standby-"

    def __init__(self, primary: ThrowawayPostgres, settings: tuple[str, ...] | None = None) -> None:
        # Same binaries, same pg_cron, same settings unless told otherwise (max_connections, for one,
        # may not be lower on a hot standby than on its primary).
        super().__init__(user=primary.user, preload_pg_cron=primary.preload_pg_cron,
                         settings=primary.settings if settings is None else settings, bindir=primary.bindir)
        self.primary = primary

    def _make_datadir(self) -> None:
        """A copy of the primary: -R writes primary_conninfo and standby.signal, -X stream copies the WAL
        written meanwhile. ThrowawayPostgres.start() then starts it on a free port and waits for it."""
        self._run("pg_basebackup", "-h", self.primary.host, "-p", str(self.primary.port), "-U", self.primary.user,
                  "-D", self.datadir, "-R", "-X", "stream", "--checkpoint=fast")

    def promote(self) -> None:
        """`pg_ctl promote -w`: returns once the standby accepts writes."""
        self._run("pg_ctl", "promote", "-w", "-D", self.datadir)

