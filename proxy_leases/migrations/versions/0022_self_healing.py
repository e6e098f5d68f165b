"""The pool heals without the scheduler, and every lease has an end.

With pg_cron missing, paused, or not yet back after a failover, nothing freed the leases dead workers
left behind, and a fleet whose pool they had exhausted stalled although every one had run out.
acquire_proxy v8, finding no proxy free, takes over one whose lease ran out, freed as the
sweep frees it. And a lease could be written to end in the year 3000, or at 'infinity', hiding its
proxy from every reclaim: the setting longest_lease (1 day, or lease_duration if longer) bounds every
lease end, on every write to proxies (tg_proxies__keep_lease_consistent v6) and up front in
acquire_proxy and renew_proxy_lease (v7), where a longer lease used to be granted. Leases already
beyond it are cut to it, with a WARNING each. Catalog changes and one UPDATE of such leases, under the
short, retried locks of 0006_lease_api. docs/server-faults.md.

Revision ID: 0022_self_healing
Revises: 0021_maintenance_health
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

revision = "0022_self_healing"
down_revision = "0021_maintenance_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "0022_self_healing_settings.sql",
        "0022_self_healing_cut_leases.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v4.sql",
        "functions/tg_proxies__keep_lease_consistent.v6.sql",
        "functions/acquire_proxy.v8.sql",
        "functions/renew_proxy_lease.v7.sql",
        "functions/proxy_leases_head_revision.v2.sql",
    )


def downgrade() -> None:
    run_sql(
        op,
        "0006_lease_api_locks.sql",
        "functions/tg_proxy_lease_settings__reject_bad_values.v3.sql",
        "functions/tg_proxies__keep_lease_consistent.v5.sql",
        "functions/acquire_proxy.v7.sql",
        "functions/renew_proxy_lease.v6.sql",
        "functions/proxy_leases_head_revision.v1.sql",
        "0022_self_healing.down.sql",
    )
