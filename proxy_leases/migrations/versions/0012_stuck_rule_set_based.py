"""The sweep's orphan rule set-based: stuck_proxies reads the task tables' partial indexes itself.

stuck_proxies called worker_has_processing_task() once per held proxy, a function that cannot be
inlined; v2 of the view writes the rule out as NOT EXISTS, so a sweep calls no function per proxy.
The LOG line's summary (summarize_proxy_holders) is the same query in PL/pgSQL, which keeps its plan.
Catalog changes only, under the short, retried locks of 0006_lease_api; no row changes.

Revision ID: 0012_stuck_rule_set_based
Revises: 0011_cron_history_retention
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0012_stuck_rule_set_based"
down_revision = "0011_cron_history_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "views/stuck_proxies.v2.sql",
        "functions/worker_has_processing_task.v3.sql",
        "functions/summarize_proxy_holders.v2.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "views/stuck_proxies.v1.sql",
        "functions/worker_has_processing_task.v2.sql",
        "functions/summarize_proxy_holders.v1.sql",
    )
