"""Partial indexes for acquire_proxy's rotation and for cooldowns, built CONCURRENTLY.

Revision ID: 0008_pool_indexes
Revises: 0007_lease_api_backfill
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql_outside_transaction

revision = "0008_pool_indexes"
down_revision = "0007_lease_api_backfill"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_outside_transaction(op, "0008_pool_indexes.sql")


def downgrade() -> None:
    run_sql_outside_transaction(op, "0008_pool_indexes.down.sql")
