"""Where proxy-leases records its revision: a table of its own, never the fleet's alembic_version.

A fleet that keeps its own schema with Alembic has `alembic_version` at revisions proxy-leases does
not know, and each tool would refuse the other's. Installs made before 0.17 recorded themselves in
`alembic_version`; the first mutating run (upgrade, downgrade, stamp) moves such a record over, but
only when that table holds exactly one row and it is a proxy-leases revision. Anything else in it
is the fleet's and is never touched. Read-only runs (current, history) read the old record in place.
"""

from __future__ import annotations

from proxy_leases.migrations.pg_cron import _literal  # one SQL-literal quoting for every generated statement

VERSION_TABLE = "proxy_leases_alembic_version"
LEGACY_TABLE = "alembic_version"



OLD_LAYOUT_QUERY = (f"SELECT to_regclass({_literal(VERSION_TABLE)}) IS NULL"
                    f" AND to_regclass({_literal(LEGACY_TABLE)}) IS NOT NULL")


def legacy_record_query(revisions: list[str]) -> str:
    """The revision recorded by an old install in alembic_version, or no row. Only for OLD_LAYOUT_QUERY true."""
    known = ", ".join(_literal(r) for r in revisions)
    return f"SELECT min(version_num) FROM {LEGACY_TABLE} HAVING count(*) = 1 AND min(version_num) IN ({known})"


def move_legacy_record_sql(revisions: list[str]) -> str:
    """A DO block that moves an old install's record to VERSION_TABLE; does nothing otherwise.

    The same statement runs online and in the `--sql` script. The old table held nothing but our
    record, so it was ours: it is dropped, and a fleet that adopts Alembic later starts clean.
    """
    known = ", ".join(_literal(r) for r in revisions)
    return f"""DO $proxy_leases$
BEGIN
    IF to_regclass({_literal(VERSION_TABLE)}) IS NULL AND to_regclass({_literal(LEGACY_TABLE)}) IS NOT NULL THEN
        -- Read first, lock only what looks like ours: the fleet's own table is never locked, and a
        -- deploy role that may not read it (the fleet's migrator owns it) finds nothing to move.
        BEGIN
            IF NOT (SELECT count(*) = 1 AND min(version_num) IN ({known}) FROM {LEGACY_TABLE}) THEN
                RETURN;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RETURN;
        END;
        LOCK TABLE {LEGACY_TABLE} IN ACCESS EXCLUSIVE MODE;
        IF (SELECT count(*) = 1 AND min(version_num) IN ({known}) FROM {LEGACY_TABLE}) THEN
            CREATE TABLE {VERSION_TABLE} (
                version_num varchar(32) NOT NULL,
                CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num));
            INSERT INTO {VERSION_TABLE} (version_num) SELECT version_num FROM {LEGACY_TABLE};
            DROP TABLE {LEGACY_TABLE};
            RAISE NOTICE 'proxy-leases: moved revision % from {LEGACY_TABLE} to {VERSION_TABLE}',
                (SELECT version_num FROM {VERSION_TABLE});
        END IF;
    END IF;
END
$proxy_leases$"""


def starting_revision_guard_sql(expected: str | None, hint_command: str) -> str:
    """A DO block for the `--sql` replay: stop, changing nothing, unless the database is at `expected`
    (None: not installed). Alembic's offline steps each update the record WHERE it names the step's
    start: applied to a database elsewhere, a replay would change functions and record nothing.
    `hint_command` is the command that prints the right script, with %s for the revision found."""
    want = _literal(expected) if expected else "NULL"
    shown = _literal(expected or "no revision (not installed)")
    return f"""DO $proxy_leases_from$
DECLARE
    v_at text;
BEGIN
    IF to_regclass({_literal(VERSION_TABLE)}) IS NOT NULL THEN
        SELECT max(version_num) INTO v_at FROM {VERSION_TABLE};
    END IF;
    IF v_at IS DISTINCT FROM {want} THEN
        RAISE EXCEPTION 'proxy-leases: this script starts from %, but the database is at %', {shown},
                        coalesce(v_at, 'no revision (not installed)')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Nothing was changed by this script.',
                  HINT = CASE WHEN v_at IS NULL THEN 'proxy-leases sql prints the install of a database without it.'
                              ELSE format({_literal('Print the script from where the database is: ' + hint_command)}, v_at)
                         END;
    END IF;
END
$proxy_leases_from$"""
