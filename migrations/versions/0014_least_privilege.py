"""Least privilege: a worker role that may use the lease API but not write proxies, and an operator role.

The functions that change proxies become SECURITY DEFINER (their search_path was already pinned), and
EXECUTE on them moves from PUBLIC to proxy_leases_worker (the fenced API) and proxy_leases_operator
(the API and the clean-ups). Roles that could call them before, by their right to update proxies or the
task tables, keep EXECUTE, each named in a NOTICE. Catalog changes only, under the short, retried
locks of 0006_lease_api. Creating the roles needs CREATEROLE, unless they exist already. The
downgrade restores the caller's-rights versions and EXECUTE for PUBLIC, and drops the roles this
revision created where nothing holds on to them.

Revision ID: 0014_least_privilege
Revises: 0013_event_recording
"""

from alembic import op

from migrations.sql_files import run_sql

revision = "0014_least_privilege"
down_revision = "0013_event_recording"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0014_least_privilege_roles.sql",
        "functions/acquire_proxy.v3.sql",
        "functions/renew_proxy_lease.v2.sql",
        "functions/release_proxy.v3.sql",
        "functions/block_proxy.v3.sql",
        "functions/unblock_proxy.v3.sql",
        "functions/unblock_cooled_down_proxies.v3.sql",
        "functions/release_stuck_proxies.v4.sql",
        "functions/release_container_proxies.v4.sql",
        "functions/requeue_stale_tasks.v2.sql",
        "0014_least_privilege_grants.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0014_least_privilege.down.sql",
        "functions/acquire_proxy.v2.sql",
        "functions/renew_proxy_lease.v1.sql",
        "functions/release_proxy.v2.sql",
        "functions/block_proxy.v2.sql",
        "functions/unblock_proxy.v2.sql",
        "functions/unblock_cooled_down_proxies.v2.sql",
        "functions/release_stuck_proxies.v3.sql",
        "functions/release_container_proxies.v3.sql",
        "functions/requeue_stale_tasks.v1.sql",
    )
