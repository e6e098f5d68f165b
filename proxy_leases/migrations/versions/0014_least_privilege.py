"""Least privilege: a worker role that may use the lease API but not write proxies, and an operator role.

The functions that change proxies become SECURITY DEFINER, and every SECURITY DEFINER function, and
every trigger they fire, gets search_path = pg_catalog, pg_temp: the empty search_path they had still searched the caller's
temporary schema first for types, which let a caller run code as their owner. EXECUTE on the nine
moves from PUBLIC to proxy_leases_worker (the fenced API) and proxy_leases_operator (the API and
the clean-ups). Roles that could call them before, by their right to update proxies or the task
tables, keep what they could call, each named in a NOTICE. Catalog changes only, under the short,
retried locks of 0006_lease_api. Creating the roles needs CREATEROLE, unless they exist already.
The downgrade restores the previous versions and EXECUTE for PUBLIC, takes back exactly what it
granted, and drops the roles this revision created where nothing holds on to them.

Revision ID: 0014_least_privilege
Revises: 0013_event_recording
"""

from alembic import op

from proxy_leases.migrations.sql_files import run_sql

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
        "functions/tg_proxies__keep_lease_consistent.v4.sql",
        "functions/tg_proxies__record_lease_events.v2.sql",
        "functions/tg_proxies__record_lease_events_on_truncate.v2.sql",
        "functions/tg_proxy_lease_settings__apply_event_recording.v2.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v4.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v3.sql",
        "functions/worker_has_processing_task.v4.sql",
        "functions/prune_lease_events.v2.sql",
        "functions/tg_proxies__announce_available.v2.sql",
        "functions/tg_proxies__announce_inserted.v2.sql",
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
        "functions/tg_proxies__keep_lease_consistent.v3.sql",
        "functions/tg_proxies__record_lease_events.v1.sql",
        "functions/tg_proxies__record_lease_events_on_truncate.v1.sql",
        "functions/tg_proxy_lease_settings__apply_event_recording.v1.sql",
        "functions/tg_tasks__release_proxy_on_task_exit.v3.sql",
        "functions/tg_tasks__renew_proxy_lease_on_heartbeat.v2.sql",
        "functions/worker_has_processing_task.v3.sql",
        "functions/prune_lease_events.v1.sql",
        "functions/tg_proxies__announce_available.v1.sql",
        "functions/tg_proxies__announce_inserted.v1.sql",
    )
