"""Partial indexes on the held proxies and the tasks in processing, built CONCURRENTLY.

Revision ID: 0002_partial_indexes
Revises: 0001_fleet_schema
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql_outside_transaction

revision = "0002_partial_indexes"
down_revision = "0001_fleet_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_outside_transaction(op, "0002_partial_indexes.sql")


def downgrade() -> None:
    run_sql_outside_transaction(op, "0002_partial_indexes.down.sql")
