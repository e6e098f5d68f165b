"""A setting to turn the audit trail off: proxy_lease_settings.record_lease_events.

The audit trail takes up to a quarter of the grants a second of a busy pool (docs/measurements.md,
"Measured"). Setting record_lease_events to false disables the audit triggers on proxies; true enables them
again. Catalog changes only, under the short, retried locks of 0006_lease_api; the new column has a
constant default, so the settings row is not rewritten. The downgrade turns the trail back on.

Revision ID: 0013_event_recording
Revises: 0012_stuck_rule_set_based
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0013_event_recording"
down_revision = "0012_stuck_rule_set_based"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/tg_proxy_lease_settings__apply_event_recording.v1.sql",
        "0013_event_recording.sql",
    )


def downgrade() -> None:
    run_sql(op, "0006_lease_api_locks.sql", "0013_event_recording.down.sql")
