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
    # Dropping and adding the rule takes ACCESS EXCLUSIVE on proxies: in the short attempts of
    # 0003_lease_locks.sql, as 0007's downgrade does, so that a wait for an open reader never queues the
    # fleet behind it. (Until 0.21 the downgrade asked for it directly: behind one open transaction that
    # had read proxies, every worker waited for the whole lock_timeout. The SQL files are unchanged.)
    run_sql(op, "0003_lease_locks.sql", "0004_lease_backfill.down.sql")
