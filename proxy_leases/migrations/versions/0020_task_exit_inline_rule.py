"""A task exit no longer plans a function afresh: the release trigger writes its rule out.

tg_tasks__release_proxy_on_task_exit asked worker_has_processing_task whether the worker had another
task in processing. That LANGUAGE sql function runs as its owner, so it cannot be inlined, and
PostgreSQL planned its body again in every transaction that called it: about 170 µs of the 480 µs a
task exit spent in the trigger. v6 of the trigger writes the two EXISTS out, as stuck_proxies does;
worker_has_processing_task stays, for anyone who asks, with a comment that says who uses its rule.
Catalog changes only, under the short, retried locks of 0006_lease_api.

Revision ID: 0020_task_exit_inline_rule
Revises: 0019_heartbeat_slots
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0020_task_exit_inline_rule"
down_revision = "0019_heartbeat_slots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v6.sql",
        "functions/worker_has_processing_task.v5.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v5.sql",
        "functions/worker_has_processing_task.v4.sql",
    )
