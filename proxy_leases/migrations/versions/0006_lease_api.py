"""The lease API: acquire, renew, release and block with fencing tokens; task recovery; quarantine; wake-ups.

Catalog changes only (columns without a rewrite, rules NOT VALID), under short, retried locks as
in 0003_lease, the settings table included; the next revision gives held proxies a token and
validates the rules.

Revision ID: 0006_lease_api
Revises: 0005_sweep_schedule
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0006_lease_api"
down_revision = "0005_sweep_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0006_lease_api_columns.sql",
        "functions/proxy_address.v1.sql",
        "functions/tg_proxies__keep_lease_consistent.v2.sql",
        "functions/tg_proxies__announce_available.v1.sql",
        "functions/tg_proxies__announce_inserted.v1.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v2.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v2.sql",
        "functions/release_stuck_proxies.v2.sql",
        "functions/release_container_proxies.v2.sql",
        "functions/acquire_proxy.v1.sql",
        "functions/renew_proxy_lease.v1.sql",
        "functions/release_proxy.v1.sql",
        "functions/block_proxy.v1.sql",
        "functions/unblock_proxy.v1.sql",
        "functions/unblock_cooled_down_proxies.v1.sql",
        "functions/requeue_stale_tasks.v1.sql",
        "procedures/run_lease_maintenance.v1.sql",
        "0006_lease_api_triggers.sql",
        "0006_lease_api_grants.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0006_lease_api.down.sql",
        "functions/tg_proxies__keep_lease_consistent.v1.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v1.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v1.sql",
        "functions/release_stuck_proxies.v1.sql",
        "functions/release_container_proxies.v1.sql",
    )
