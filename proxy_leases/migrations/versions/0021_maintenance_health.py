"""The maintenance leaves its own trace in the fleet's database, and proxy-leases checks itself.

Nothing in the fleet's database showed that the sweeper had stopped: pg_cron's run history lives in
pg_cron's database, which the fleet's roles and dashboards usually cannot read. run_lease_maintenance
v3 records each run in proxy_lease_maintenance_runs (the newest 1,440; recording can only warn, never
fail the run), and the view proxy_leases_health gives one row per check (revision, maintenance on
time and succeeded, no proxy held past its lease, free pool above a floor, quarantine below a share,
audit pruning keeping up), each with what it saw, the threshold and what to do. Three settings set
the thresholds. proxy_lease_event_totals counts every event ever recorded, by event and reason
(prune_lease_events v3 keeps the pruned ones' counts), for monitoring counters. Readable by
proxy_leases_operator and pg_monitor. Catalog changes and one new table,
under the short, retried locks of 0006_lease_api. docs/monitoring.md.

Revision ID: 0021_maintenance_health
Revises: 0020_task_exit_inline_rule
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0021_maintenance_health"
down_revision = "0020_task_exit_inline_rule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0021_maintenance_health_settings.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v3.sql",
        "0021_maintenance_health_runs.sql",
        "procedures/run_lease_maintenance.v3.sql",
        "functions/proxy_leases_head_revision.v1.sql",
        "functions/proxy_leases_installed_revision.v1.sql",
        "views/proxy_leases_health.v1.sql",
        "0021_maintenance_health_event_totals.sql",
        "functions/prune_lease_events.v3.sql",
        "views/proxy_lease_event_totals.v1.sql",
        "0021_maintenance_health_grants.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0021_maintenance_health.down.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v2.sql",
        "procedures/run_lease_maintenance.v2.sql",
        "functions/prune_lease_events.v2.sql",
    )
