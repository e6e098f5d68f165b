"""proxy_leases/sql/schema.sql, the current schema in one file, is what `upgrade head` makes (tools/schema_file.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from tools import schema_file


@pytest.fixture
def dumped(request, pg_server) -> tuple[str, str]:
    """(pg_dump's output, the schema file's text) of the suite's database at head, by the server's own pg_dump."""
    if pg_server.major_version != schema_file.MAJOR_VERSION:
        pytest.skip(f"{schema_file.SHOWN_PATH} is pg_dump's output of PostgreSQL {schema_file.MAJOR_VERSION}, and "
                    f"pg_dump prints other text for other major versions; this server is {pg_server.version_text}")
    db = request.getfixturevalue("db")
    return schema_file.dumped_and_tidied(db.url, pg_server.bindir)


def test_the_schema_file_is_what_upgrade_head_makes(dumped):
    _, made = dumped
    committed = schema_file.PATH.read_text()
    if made != committed:
        pytest.fail(f"{schema_file.SHOWN_PATH} is not what upgrade head makes:\n"
                    f"{schema_file.difference(committed, made)}\n{schema_file.REGENERATE}", pytrace=False)


def test_tidying_leaves_out_only_pg_dumps_own_lines(dumped):
    """Every statement line of pg_dump's output is in the file, as often, and nothing else but comment
    lines: the tidying drops pg_dump's header, its SET lines and \\restrict keys, and adds comments."""
    dump, made = dumped
    own = ("--", "SET ", "SELECT pg_catalog.set_config(", "\\restrict ", "\\unrestrict ")
    statements_dumped = Counter(line for line in dump.splitlines() if line and not line.startswith(own))
    statements_kept = Counter(line for line in made.splitlines() if line and not line.startswith("--"))
    assert statements_kept == statements_dumped
    assert sum(statements_dumped.values()) > 1000
