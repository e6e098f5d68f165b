"""Run the frozen SQL files of sql/ from a revision.

A revision names the files it runs; those files never change once a revision uses them, so an old
revision always installs exactly what it installed the day it was written. sql/SHA256SUMS pins
each file, and run_sql refuses a file that no longer matches.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
CHECKSUMS = SQL_DIR / "SHA256SUMS"


class FrozenSqlChanged(RuntimeError):
    pass


def pinned_checksums() -> dict[str, str]:
    pins = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            pins[name.strip()] = digest
    return pins


def read_sql(name: str) -> str:
    path = SQL_DIR / name
    data = path.read_bytes()
    expected = pinned_checksums().get(name)
    actual = hashlib.sha256(data).hexdigest()
    if expected is None:
        raise FrozenSqlChanged(f"sql/{name} is not pinned in sql/SHA256SUMS: add `{actual}  {name}`")
    if expected != actual:
        raise FrozenSqlChanged(
            f"sql/{name} changed after a revision started using it. Applied revisions never change: "
            "put the new definition in a new file (name.v<N+1>.sql) run by a new revision."
        )
    text = data.decode("utf-8")
    binds = sa.text(text).compile().binds
    if binds:
        raise ValueError(f"sql/{name}: SQLAlchemy would read {sorted(binds)} as bind parameters; rewrite them")
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
