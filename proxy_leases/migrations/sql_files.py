"""Run the frozen SQL files of sql/ from a revision.

A revision names the files it runs; those files never change once a revision uses them, so an old
revision always installs exactly what it installed the day it was written. sql/SHA256SUMS pins
each file, and run_sql refuses a file that no longer matches.

A revision names a file by its logical name (`0003_lease_columns.sql`, `functions/acquire_proxy.v3.sql`),
which says nothing of the folder it sits in, so that the files can be arranged for the reader without
touching a revision or a pin (sql/README.md):
  sql/<name>            the definitions installed at head: functions/, procedures/, views/ (the newest
                        version of each object the head has);
  sql/revisions/<name>  each revision's own steps (tables, columns, indexes, triggers, rights, backfills);
  sql/history/<name>    the versions the head no longer has, kept for the revisions (and downgrades) that run them.
Exactly one of them must hold the file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
CHECKSUMS = SQL_DIR / "SHA256SUMS"
# Where a logical name may sit, under SQL_DIR ("": sql/ itself, the installed definitions).
REVISIONS = "revisions"
HISTORY = "history"
FOLDERS = ("", REVISIONS, HISTORY)
# Written from a database at head by scripts/schema, for reading: no revision runs it, nothing pins it.
SCHEMA_FILE = "schema.sql"


class FrozenSqlChanged(RuntimeError):
    pass


class SqlFileNotFound(LookupError):
    """A logical name that no folder holds, or that more than one does."""


def pinned_checksums() -> dict[str, str]:
    pins = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            pins[name.strip()] = digest
    return pins


def candidates(name: str) -> list[Path]:
    """The files that hold logical name `name`: one, in a tidy tree."""
    return [SQL_DIR / folder / name for folder in FOLDERS if (SQL_DIR / folder / name).is_file()]


def sql_path(name: str) -> Path:
    """The one file of logical name `name`: sql/<name>, sql/revisions/<name> or sql/history/<name>."""
    found = candidates(name)
    if not found:
        where = ", ".join(f"sql/{Path(folder, name).as_posix()}" for folder in FOLDERS)
        raise SqlFileNotFound(f"no file holds {name}: looked for {where} (sql/README.md)")
    if len(found) > 1:
        held = " and ".join(path.relative_to(SQL_DIR.parent).as_posix() for path in found)
        raise SqlFileNotFound(f"both {held} hold {name}: keep one (sql/README.md)")
    return found[0]


def logical_name(path: Path) -> str:
    """The name a revision and sql/SHA256SUMS give the file at `path` (under SQL_DIR)."""
    relative = path.relative_to(SQL_DIR)
    if relative.parts[0] in (REVISIONS, HISTORY):
        relative = relative.relative_to(relative.parts[0])
    return relative.as_posix()


def frozen_files() -> list[Path]:
    """Every SQL file under sql/ that a revision may run: all but the generated schema file."""
    return sorted(path for path in SQL_DIR.rglob("*.sql") if path != SQL_DIR / SCHEMA_FILE)


def read_sql(name: str) -> str:
    path = sql_path(name)
    shown = path.relative_to(SQL_DIR.parent).as_posix()
    data = path.read_bytes()
    expected = pinned_checksums().get(name)
    actual = hashlib.sha256(data).hexdigest()
    if expected is None:
        raise FrozenSqlChanged(f"{shown} is not pinned in sql/SHA256SUMS: add `{actual}  {name}`")
    if expected != actual:
        raise FrozenSqlChanged(
            f"{shown} changed after a revision started using it. Applied revisions never change: "
            "put the new definition in a new file (name.v<N+1>.sql) run by a new revision."
        )
    text = data.decode("utf-8")
    binds = sa.text(text).compile().binds
    if binds:
        raise ValueError(f"{shown}: SQLAlchemy would read {sorted(binds)} as bind parameters; rewrite them")
    return text


def split_statements(text: str) -> list[str]:
    """Statements of a file that holds no function bodies, one per entry (for CONCURRENTLY)."""
    if "$" in text:
        raise ValueError("split_statements is only for files without dollar-quoted bodies")
    without_comments = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def run_sql(op, *names: str) -> None:
    """Run each file, in order, in the revision's transaction."""
    for name in names:
        op.execute(sa.text(read_sql(name)))


def run_sql_outside_transaction(op, *names: str) -> None:
    """Run each statement of each file on its own, committed: for CREATE INDEX CONCURRENTLY."""
    with op.get_context().autocommit_block():
        for name in names:
            for statement in split_statements(read_sql(name)):
                op.execute(sa.text(statement))
