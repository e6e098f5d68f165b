"""Give the proxies held today a fencing token, commit, then validate 0006's rules.

Revision ID: 0007_lease_api_backfill
Revises: 0006_lease_api
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql, run_sql_outside_transaction

revision = "0007_lease_api_backfill"
down_revision = "0006_lease_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(op, "0007_lease_api_backfill_report.sql", "0007_lease_api_backfill.sql")
    run_sql_outside_transaction(op, "0007_lease_api_validate.sql")


def downgrade() -> None:
    # Dropping and adding a rule takes ACCESS EXCLUSIVE on proxies: in short attempts, as 0006 does.
    run_sql(op, "0006_lease_api_locks.sql", "0007_lease_api_backfill.down.sql")
