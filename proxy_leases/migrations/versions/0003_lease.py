"""The lease: settings, columns, the consistency rule (NOT VALID), the sweeper, the triggers.

Only catalog changes here, so the locks this revision takes on the fleet's tables last
milliseconds; filling in existing rows and validating the rule is the next revision.

Revision ID: 0003_lease
Revises: 0002_partial_indexes
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0003_lease"
down_revision = "0002_partial_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0003_lease_locks.sql",
        "0003_lease_settings.sql",
        "0003_lease_columns.sql",
        "functions/worker_has_processing_task.v1.sql",
        "functions/tg_proxies__keep_lease_consistent.v1.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v1.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v1.sql",
        "views/stuck_proxies.v1.sql",
        "functions/release_stuck_proxies.v1.sql",
        "functions/release_container_proxies.v1.sql",
        "0003_lease_triggers.sql",
        "0003_lease_grants.sql",
    )


def downgrade() -> None:
    run_sql(op, "0003_lease_locks.sql", "0003_lease.down.sql")
