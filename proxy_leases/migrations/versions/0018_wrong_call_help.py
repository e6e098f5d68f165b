"""Wrong calls get help: a forgotten token or reason, swapped arguments, a lease that is a bare number.

release_proxy(65), renew_proxy_lease(65) and block_proxy(65, 'HTTP 403') (the token forgotten), and
block_proxy(65, <token>) (the reason forgotten) got PostgreSQL's "function ... does not exist";
overloads with exactly those arguments now raise the same SQLSTATE, 42883, with the values and a
hint showing the right call, and have the rights of the function they stand beside. They take no
correct call: each has fewer arguments than the real function accepts. Arguments swapped (the token
first) raise 22023 with a hint showing the call in the right order, from
raise_if_lease_arguments_swapped, which new versions of renew_proxy_lease (it said LP001, "stop
using this proxy"), release_proxy and block_proxy (they returned false) call only once the pair
named no row. acquire_proxy and renew_proxy_lease warn, and grant as asked, when an explicit lease
is shorter than orphan_grace: '30' is 30 seconds. docs/api.md, "Wrong calls". Catalog changes only, under
the short, retried locks of 0006_lease_api.

Revision ID: 0018_wrong_call_help
Revises: 0017_finite_intervals
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0018_wrong_call_help"
down_revision = "0017_finite_intervals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/raise_if_lease_arguments_swapped.v1.sql",
        "functions/acquire_proxy.v7.sql",
        "functions/renew_proxy_lease.v6.sql",
        "functions/release_proxy.v5.sql",
        "functions/block_proxy.v7.sql",
        "functions/release_proxy.without_token.v1.sql",
        "functions/renew_proxy_lease.without_token.v1.sql",
        "functions/block_proxy.without_token.v1.sql",
        "functions/block_proxy.without_reason.v1.sql",
        "0018_wrong_call_help_grants.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0018_wrong_call_help.down.sql",
        "functions/acquire_proxy.v6.sql",
        "functions/renew_proxy_lease.v5.sql",
        "functions/release_proxy.v4.sql",
        "functions/block_proxy.v6.sql",
    )
