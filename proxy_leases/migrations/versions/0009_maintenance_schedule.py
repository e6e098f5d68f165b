"""The pg_cron job runs all the periodic work: CALL run_lease_maintenance() instead of the sweep alone.

Same job (proxy_leases_sweep.<database>), same schedule options as 0005_sweep_schedule; the
downgrade puts 0005's command back.

Revision ID: 0009_maintenance_schedule
Revises: 0008_pool_indexes
"""

from alembic import op

from proxy_leases.migrations.pg_cron import MAINTENANCE_COMMAND, SWEEP_COMMAND, schedule_job

revision = "0009_maintenance_schedule"
down_revision = "0008_pool_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schedule_job(op, MAINTENANCE_COMMAND)


def downgrade() -> None:
    schedule_job(op, SWEEP_COMMAND)
