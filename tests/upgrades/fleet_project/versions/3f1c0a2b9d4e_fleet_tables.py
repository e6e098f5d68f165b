"""The fleet's tables.

Revision ID: 3f1c0a2b9d4e
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "3f1c0a2b9d4e"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proxies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("is_in_use", sa.Boolean, server_default=sa.text("false")),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("is_blocked", sa.Boolean, server_default=sa.text("false")),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    for table in ("catalog_tasks", "object_tasks"):
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("url", sa.Text, nullable=False),
            sa.Column("status", sa.String(20), nullable=False, server_default=sa.text("'pending'")),
            sa.Column("worker_id", sa.String(64)),
            sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        )


def downgrade() -> None:
    for table in ("object_tasks", "catalog_tasks", "proxies"):
        op.drop_table(table)
