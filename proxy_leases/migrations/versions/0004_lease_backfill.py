"""Give the proxies held today a lease, free the half-held ones, validate the rule.

Revision ID: 0004_lease_backfill
Revises: 0003_lease
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0004_lease_backfill"
down_revision = "0003_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(op, "0004_lease_backfill_report.sql", "0004_lease_backfill.sql")


def downgrade() -> None:
    run_sql(op, "0004_lease_backfill.down.sql")
