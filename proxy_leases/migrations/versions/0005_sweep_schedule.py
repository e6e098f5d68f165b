"""Schedule release_stuck_proxies() with pg_cron (see migrations/pg_cron.py and -x cron=...).

Revision ID: 0005_sweep_schedule
Revises: 0004_lease_backfill
"""

from alembic import op

from proxy_leases.migrations.pg_cron import schedule_sweeper, unschedule_sweeper

revision = "0005_sweep_schedule"
down_revision = "0004_lease_backfill"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schedule_sweeper(op)


def downgrade() -> None:
    unschedule_sweeper(op)
