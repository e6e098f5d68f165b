"""Heartbeats run nothing but their own UPDATE, except the first of each renewal slot.

Every heartbeat of a task in processing ran tg_tasks__renew_proxy_lease_on_heartbeat, which read
the settings and probed proxies although nine in ten renewed nothing: a fifth to a third of the
fleet's heartbeat throughput. The heartbeat triggers' WHEN clause now lets through only the first
heartbeat of a task in each renewal slot, a tenth of lease_duration on the heartbeat's own clock,
which is when a renewal can be due; the others are dropped before any PL/pgSQL runs. A WHEN clause
cannot read the settings: place_heartbeat_triggers writes the slot into it, now and, from a
new trigger on proxy_lease_settings, whenever lease_duration changes. The renewal function is unchanged. Catalog
changes only, under the short, retried locks of 0006_lease_api. docs/design.md, "Heartbeats: renewal slots".

Revision ID: 0019_heartbeat_slots
Revises: 0018_wrong_call_help
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0019_heartbeat_slots"
down_revision = "0018_wrong_call_help"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/place_heartbeat_triggers.v1.sql",
        "functions/tg_proxy_lease_settings__place_heartbeat_triggers.v1.sql",
        "0019_heartbeat_slots.sql",
    )


def downgrade() -> None:
    run_sql(op, "0006_lease_api_locks.sql", "0019_heartbeat_slots.down.sql")
