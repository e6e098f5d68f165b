"""Keep a fleet's `alembic revision --autogenerate` from proposing to drop what proxy-leases added.

Autogenerate compares the fleet's SQLAlchemy models with the database. The tables, the columns
on `proxies` and the indexes that proxy-leases adds are in no model of the fleet's, so without
this hook every new fleet revision would drop them. In the fleet's env.py:

    from proxy_leases.autogenerate import include_object
    context.configure(..., include_object=include_object)

A fleet that has an include_object of its own combines the two:
`include_object=proxy_leases.autogenerate.also(own_include_object)`.

Only names proxy-leases owns are hidden, in every revision it ever had; the fleet's own columns
and indexes on the same tables are compared as before. tests/upgrades/test_fleet_alembic.py proves the
list complete: on a database at head, the fleet's autogenerate finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy_leases.migrations.version_table import VERSION_TABLE

TABLES = frozenset({
    VERSION_TABLE,
    "proxy_leases_adopted_tables",  # 0001: which fleet tables the baseline created
    "proxy_lease_settings",         # 0003
    "proxy_lease_events",           # 0010
    "proxy_lease_maintenance_runs",  # 0021
    "proxy_lease_events_pruned",    # 0021
})
# Columns added to the fleet's proxies table (0003, 0006, 0010, 0016); the task tables get none.
COLUMNS = {
    "proxies": frozenset({
        "leased_at", "leased_until", "renewed_at", "released_at",           # 0003
        "lease_token", "blocked_at", "blocked_until", "blocked_reason",     # 0006
        "strike_count",                                                      # 0010
        "released_lease_token", "blocked_lease_token",                      # 0016
    }),
}
# Indexes on the fleet's tables (0002, 0008); those on proxy-leases' own tables go with the tables.
INDEXES = frozenset({
    "catalog_tasks_processing_worker_idx", "object_tasks_processing_worker_idx",
    "proxies_free_rotation_idx", "proxies_held_worker_idx", "proxies_cooldown_idx",
})

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def owned_by_proxy_leases(name: str | None, type_: str, table_name: str | None) -> bool:
    if type_ == "table":
        return name in TABLES
    if table_name in TABLES:
        return True
    if type_ == "column":
        return name in COLUMNS.get(table_name or "", frozenset())
    if type_ in ("index", "unique_constraint", "foreign_key_constraint"):
        return name in INDEXES
    return False


def include_object(object_: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's include_object hook: False for what proxy-leases installed, True for the rest."""
    table = getattr(object_, "table", None)
    table_name = getattr(table, "name", None)
    return not owned_by_proxy_leases(name, type_, table_name)


def also(own: IncludeObject) -> IncludeObject:
    """The fleet's own include_object, with proxy-leases' objects left out as well."""
    def combined(object_: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return include_object(object_, name, type_, reflected, compare_to) and own(
            object_, name, type_, reflected, compare_to)
    return combined
