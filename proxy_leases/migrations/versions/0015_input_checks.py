"""Input checks: every bad argument and every bad setting gets a clear error that names it.

A catalogue of bad inputs (docs/bad-input.md, "Bad input") found the few that slipped through: a worker number
of any length, intervals so long that adding them to a timestamp overflows (22008 with no hint, or,
as a setting, every later acquire or requeue failing), a block reason of tabs and newlines, a NULL
proxy id read as an unknown one, and settings refused only by a constraint's name. New versions of
acquire_proxy, renew_proxy_lease, block_proxy, requeue_stale_tasks and unblock_proxy, and a trigger
on proxy_lease_settings. Catalog changes only, under the short, retried locks of 0006_lease_api.

Revision ID: 0015_input_checks
Revises: 0014_least_privilege
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0015_input_checks"
down_revision = "0014_least_privilege"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/acquire_proxy.v4.sql",
        "functions/renew_proxy_lease.v3.sql",
        "functions/block_proxy.v4.sql",
        "functions/requeue_stale_tasks.v3.sql",
        "functions/unblock_proxy.v4.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v1.sql",
        "0015_input_checks.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0015_input_checks.down.sql",
        "functions/acquire_proxy.v3.sql",
        "functions/renew_proxy_lease.v2.sql",
        "functions/block_proxy.v3.sql",
        "functions/requeue_stale_tasks.v2.sql",
        "functions/unblock_proxy.v3.sql",
    )
