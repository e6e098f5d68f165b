"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

# Files by logical name (proxy_leases/sql/README.md): this revision's steps in sql/revisions/, a new version
# of a definition in sql/functions/ (the version it replaces moves, unchanged, to sql/history/).

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    run_sql(op, ...)


def downgrade() -> None:
    run_sql(op, ...)
