"""What a run did, said once, last: the end-of-run summary of every upgrade, downgrade and stamp.

An operator reads the last lines of a deploy and its exit code, nothing else. So the run compares
the database before and after (revision, tables, roles), collects what the revisions reported on
the way (each NOTICE and WARNING once, backfills included), and asks pg_cron, at the end, which
jobs really exist: a job created and replaced within the run is reported once, as it is now. When
the revision the database ends at needs the maintenance job and nothing will run it, that is the
last and loudest line, with the reason and the statements that fix it, and the run exits with
NO_SWEEPER_EXIT unless the operator chose that (cron=off, or cron=auto given explicitly).
"""

from __future__ import annotations

import dataclasses
import logging

import psycopg

log = logging.getLogger("alembic.proxy_leases")

# What an installed proxy-leases consists of, as far as a summary names it.
TABLES = ("proxies", "catalog_tasks", "object_tasks", "proxy_lease_settings", "proxy_lease_events",
          "proxy_leases_adopted_tables", "proxy_leases_alembic_version")
FLEET_TABLES = ("proxies", "catalog_tasks", "object_tasks")
ROLES = ("proxy_leases_worker", "proxy_leases_operator")
# The first revision after which something must run the maintenance every minute.
SWEEPER_REVISION = "0005_sweep_schedule"
# Distinct from 1 (the run failed): every revision ran and is recorded, but nothing will sweep.
NO_SWEEPER_EXIT = 3
# A revision's NOTICE that reports rows it changed starts with this (0004_lease_backfill_report.sql).
BACKFILL_MARK = "proxy-leases backfill: "


@dataclasses.dataclass(frozen=True)
class Snapshot:
    revision: str | None
    tables: frozenset[str]
    roles: dict[str, tuple[str, ...]]   # role -> its members


def snapshot(conn: psycopg.Connection, version_table: str) -> Snapshot:
    tables = frozenset(name for (name,) in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')"
        " AND relname = ANY(%s)", (list(TABLES),)))
    revision = None
    if version_table in tables or conn.execute("SELECT to_regclass(%s) IS NOT NULL", (version_table,)).fetchone()[0]:
        revision = conn.execute(f"SELECT max(version_num) FROM {version_table}").fetchone()[0]
    roles = {name: tuple(members) for name, members in conn.execute(
        "SELECT r.rolname, array_remove(array_agg(m.rolname::text ORDER BY m.rolname), NULL)"
        "  FROM pg_roles r LEFT JOIN pg_auth_members a ON a.roleid = r.oid LEFT JOIN pg_roles m ON m.oid = a.member"
        " WHERE r.rolname = ANY(%s) GROUP BY r.rolname", (list(ROLES),))}
    return Snapshot(revision, tables, roles)


@dataclasses.dataclass
class CronState:
    """What pg_cron holds for this database at the end of the run (pg_cron.final_state)."""
    jobs: list[dict] = dataclasses.field(default_factory=list)
    reason: str | None = None          # why the maintenance job is not there, if it is not
    fix: list[str] = dataclasses.field(default_factory=list)   # the statements that put it there


@dataclasses.dataclass
class RunSummary:
    database: str
    role: str
    superuser: bool
    before: Snapshot
    after: Snapshot | None = None
    notices: list[tuple[str, str]] = dataclasses.field(default_factory=list)   # (severity, text), each once
    cron_mode: str = "auto"
    cron_mode_given: bool = False
    cron_before: CronState | None = None
    cron: CronState | None = None
    needs_sweeper: bool = False

    def notice(self, severity: str, text: str) -> bool:
        """Keep a server message, unless it was kept already; True when it is new."""
        if (severity, text) in self.notices:
            return False
        self.notices.append((severity, text))
        return True

    @property
    def nothing_sweeps(self) -> bool:
        return self.needs_sweeper and self.cron_mode != "off" and not self.maintenance_job

    @property
    def maintenance_job(self) -> dict | None:
        return next((job for job in (self.cron.jobs if self.cron else []) if job["jobname"].startswith(
            "proxy_leases_sweep.")), None)

    def exit_code(self) -> int:
        if self.nothing_sweeps and not (self.cron_mode_given and self.cron_mode == "auto"):
            return NO_SWEEPER_EXIT
        return 0

    def lines(self) -> list[str]:
        after = self.after or self.before
        moved = (f"{self.before.revision or '(not installed)'} -> {after.revision or '(not installed)'}"
                 if self.before.revision != after.revision else f"{after.revision or '(not installed)'}, unchanged")
        out = [f"proxy-leases summary for database {self.database}, as role {self.role}"
               f"{' (a superuser)' if self.superuser else ''}:",
               f"  revision: {moved}"]
        created = sorted(after.tables - self.before.tables)
        removed = sorted(self.before.tables - after.tables)
        adopted = sorted(t for t in FLEET_TABLES if t in self.before.tables and self.before.revision is None
                         and after.revision is not None)
        tables = ([f"adopted {', '.join(adopted)} (kept with their rows)"] if adopted else []) + (
            [f"created {', '.join(created)}"] if created else []) + ([f"removed {', '.join(removed)}"] if removed else [])
        if after.revision is None and self.before.revision is not None and "proxy_leases_alembic_version" in after.tables:
            tables.append("kept proxy_leases_alembic_version, empty (docs/install.md, 'Uninstalling')")
        out.append(f"  tables: {'; '.join(tables) if tables else 'none created or removed'}")
        backfills = [text[len(BACKFILL_MARK):] for _, text in self.notices if text.startswith(BACKFILL_MARK)]
        out += [f"  backfill: {text}" for text in backfills] or ["  backfills: no rows changed"]
        out += self._role_lines(after)
        others = [(severity, text) for severity, text in self.notices if not text.startswith(BACKFILL_MARK)]
        out += [f"  {severity.lower()}: {text}" for severity, text in others]
        out += self._cron_lines()
        return out

    def _role_lines(self, after: Snapshot) -> list[str]:
        lines = []
        for role in ROLES:
            was, now = role in self.before.roles, role in after.roles
            if now and not was:
                lines.append(f"  role {role}: created")
            elif was and not now:
                lines.append(f"  role {role}: dropped")
            elif was and now and after.revision is None:
                members = after.roles[role]
                why = (f"it has members ({', '.join(members)})" if members else
                       "a NOTICE above says why where the downgrade tried: rights in another database, or a role "
                       "this one may not drop; or proxy-leases did not create it")
                lines.append(f"  role {role}: kept, {why}. docs/install.md, 'Uninstalling' shows how to drop it")
            elif now:
                lines.append(f"  role {role}: present ({', '.join(after.roles[role]) or 'no members'})")
        return lines

    def _cron_lines(self) -> list[str]:
        if self.cron_mode == "off":
            if self.needs_sweeper:
                return ["  pg_cron: left alone (cron=off). Run CALL public.run_lease_maintenance() every minute from "
                        "your own scheduler (docs/operations.md, 'Without pg_cron')."]
            return ["  pg_cron: left alone (cron=off)"]
        state = self.cron or CronState()
        before = {job["jobid"]: job for job in (self.cron_before.jobs if self.cron_before else [])}
        lines = [f"  pg_cron job {job['jobid']} {job['jobname']}: {self._what_it_runs(job)} in database {job['database']}, "
                 f"schedule {job['schedule']!r} (GMT), as role {job['username']}"
                 f"{'' if job['active'] else ', PAUSED (cron.alter_job ... active := false)'}"
                 f"{self._replaced(job, before)}" for job in state.jobs]
        now = {job["jobid"] for job in state.jobs}
        names_now = {job["jobname"] for job in state.jobs}
        lines += [f"  pg_cron job {jobid} {job['jobname']}: removed" for jobid, job in before.items()
                  if jobid not in now and job["jobname"] not in names_now]
        if self.maintenance_job and self.superuser:
            lines.append(f"  warning: the job runs as {self.maintenance_job['username']}, a superuser, because that role "
                         "ran the upgrade; run it as the role that owns the fleet's tables "
                         "(docs/operations.md, 'The pg_cron job')")
        if not self.needs_sweeper:
            return lines or ["  pg_cron: no job for this database (none is needed at this revision)"]
        if self.maintenance_job:
            return lines
        consequence = ("the upgrade exits with status 3" if self.exit_code() else
                       "cron=auto was given, so the exit status is 0")
        return lines + [
            f"  pg_cron: {state.reason or 'the maintenance job was not found'}",
            "  To fix it:",
            *(f"    {line}" if line.endswith(":") else f"      {line}" for line in state.fix),
            f"NOT SCHEDULED: nothing will run CALL public.run_lease_maintenance(), so no stuck proxy is freed by "
            f"itself. Every revision was applied and recorded; {consequence}. Fix it as above, or run the maintenance "
            "every minute from your own scheduler and pass --cron off (alembic: -x cron=off).",
        ]

    @staticmethod
    def _replaced(job: dict, before: dict[int, dict]) -> str:
        old = [jobid for jobid, was in before.items() if was["jobname"] == job["jobname"] and jobid != job["jobid"]]
        return f" (replaces job {', '.join(map(str, old))})" if old else ""

    @staticmethod
    def _what_it_runs(job: dict) -> str:
        if job["jobname"].startswith("proxy_leases_prune_history."):   # a DELETE of 560 characters
            age = job["command"].split("interval '", 1)[-1].split("'", 1)[0]
            return f"prunes cron.job_run_details of this database's jobs (runs older than {age})"
        return repr(job["command"])

    def report(self) -> None:
        lines = self.lines()
        loud = self.nothing_sweeps or any(line.startswith("  warning: ") for line in lines)
        (log.warning if loud else log.info)("%s", "\n".join(lines))
