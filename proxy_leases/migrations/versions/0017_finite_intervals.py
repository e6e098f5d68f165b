"""Finite intervals: 'infinity' as a lease, a cooldown, a heartbeat_timeout or a setting is refused by name.

PostgreSQL 17 made 'infinity' and '-infinity' valid intervals. Before, they were refused on input
(22007) and never reached a function; from 17 on, acquire_proxy, renew_proxy_lease, block_proxy,
requeue_stale_tasks and the settings' checking trigger took them into their own checks, which failed
with 22008 'interval out of range' and no hint. New versions of the five refuse them first, with
22023 (23514 for a setting), the value and a hint, like any other bad interval (docs/bad-input.md, "Bad input"). Catalog changes only, under the short, retried locks of
0006_lease_api.

Revision ID: 0017_finite_intervals
Revises: 0016_decide_after_lock
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0017_finite_intervals"
down_revision = "0016_decide_after_lock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/acquire_proxy.v6.sql",
        "functions/renew_proxy_lease.v5.sql",
        "functions/block_proxy.v6.sql",
        "functions/requeue_stale_tasks.v5.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v2.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/acquire_proxy.v5.sql",
        "functions/renew_proxy_lease.v4.sql",
        "functions/block_proxy.v5.sql",
        "functions/requeue_stale_tasks.v4.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v1.sql",
    )
