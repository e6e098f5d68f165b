"""Decide after the lock: what a call decided before it waited for a row lock is decided again after.

New versions of acquire_proxy (the worker's proxy rows are locked before its advisory lock, and
judged after both), renew_proxy_lease, release_proxy and block_proxy (the row is locked, then the
lease judged against the clock), release_stuck_proxies (the locked rows are judged again against
the task tables as they are then), and the two task triggers (at REPEATABLE READ or SERIALIZABLE
a proxy row changed since the snapshot is skipped, not an error); requeue_stale_tasks refuses any
level but READ COMMITTED, as acquire_proxy does, instead of blaming the fleet's rules. block_proxy records a ban when
nobody was granted the proxy since the caller's grant, which the new columns
proxies.released_lease_token and blocked_lease_token tell it (nullable: instant). docs/concurrency.md says why. Catalog
changes only, under the short, retried locks of 0006_lease_api.

Revision ID: 0016_decide_after_lock
Revises: 0015_input_checks
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0016_decide_after_lock"
down_revision = "0015_input_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0016_decide_after_lock.sql",
        "functions/tg_proxies__keep_lease_consistent.v5.sql",
        "functions/acquire_proxy.v5.sql",
        "functions/renew_proxy_lease.v4.sql",
        "functions/release_proxy.v4.sql",
        "functions/block_proxy.v5.sql",
        "functions/release_stuck_proxies.v5.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v4.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v5.sql",
        "functions/requeue_stale_tasks.v4.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/tg_proxies__keep_lease_consistent.v4.sql",
        "functions/acquire_proxy.v4.sql",
        "functions/renew_proxy_lease.v3.sql",
        "functions/release_proxy.v3.sql",
        "functions/block_proxy.v4.sql",
        "functions/release_stuck_proxies.v4.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v3.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v4.sql",
        "functions/requeue_stale_tasks.v3.sql",
        "0016_decide_after_lock.down.sql",
    )
