"""Baseline: create the fleet's tables on an empty database, adopt them on a live one.

Revision ID: 0001_fleet_schema
Revises:
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0001_fleet_schema"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(op, "0001_fleet_schema.sql")


def downgrade() -> None:
    run_sql(op, "0001_fleet_schema.down.sql")
