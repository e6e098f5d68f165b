"""pg_cron's own run history of this database's jobs is pruned too: a second job, hourly, in the pg_cron database.

pg_cron records every run in cron.job_run_details and never deletes one; the maintenance job alone
adds 1,440 rows a day. Runs older than -x cron_history_retention (default 7 days) are deleted; other
jobs' history is left alone. Same cron=auto|require|off modes as 0005_sweep_schedule.

Revision ID: 0011_cron_history_retention
Revises: 0010_lease_events
"""

from alembic import op

from proxy_leases.migrations.pg_cron import history_job_name, schedule_history_pruning, unschedule_job

revision = "0011_cron_history_retention"
down_revision = "0010_lease_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schedule_history_pruning(op)


def downgrade() -> None:
    unschedule_job(op, name=history_job_name)
