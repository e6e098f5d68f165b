"""Observability: the audit trail of every grant, release, block and unblock; pool status views; recovery times.

Catalog changes, an empty table and function definitions, under the short, retried locks of
0006_lease_api. Held proxies get renewed_at (a few rows: only the held ones).

Revision ID: 0010_lease_events
Revises: 0009_maintenance_schedule
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0010_lease_events"
down_revision = "0009_maintenance_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0010_lease_events_table.sql",
        "functions/worker_has_processing_task.v2.sql",
        "functions/tg_proxies__keep_lease_consistent.v3.sql",
        "functions/tg_proxies__record_lease_events.v1.sql",
        "functions/tg_proxies__record_lease_events_on_truncate.v1.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v3.sql",
        "functions/summarize_proxy_holders.v1.sql",
        "functions/release_stuck_proxies.v3.sql",
        "functions/release_container_proxies.v3.sql",
        "functions/acquire_proxy.v2.sql",
        "functions/release_proxy.v2.sql",
        "functions/block_proxy.v2.sql",
        "functions/unblock_proxy.v2.sql",
        "functions/unblock_cooled_down_proxies.v2.sql",
        "functions/prune_lease_events.v1.sql",
        "procedures/run_lease_maintenance.v2.sql",
        "views/proxy_pool_status.v1.sql",
        "views/proxy_pool_by_container.v1.sql",
        "views/proxy_recoveries.v1.sql",
        "0010_lease_events_triggers.sql",
        "0010_lease_events_grants.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0010_lease_events.down.sql",
        "functions/worker_has_processing_task.v1.sql",
        "functions/tg_proxies__keep_lease_consistent.v2.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v2.sql",
        "functions/release_stuck_proxies.v2.sql",
        "functions/release_container_proxies.v2.sql",
        "functions/acquire_proxy.v1.sql",
        "functions/release_proxy.v1.sql",
        "functions/block_proxy.v1.sql",
        "functions/unblock_proxy.v1.sql",
        "functions/unblock_cooled_down_proxies.v1.sql",
        "procedures/run_lease_maintenance.v1.sql",
    )
