"""The bad input catalogue: every row of the table in docs/bad-input.md, run against a real database.

The table (`| Call | Result |`, see BAD_INPUT_TABLE) is the documentation and the test at once: each
row is one test. A row's call runs on its own copy of a database where two workers hold proxies
with tasks in processing, one proxy is blocked and one is free; the row's result is either an
error (SQLSTATE, a fragment of the message, and a HINT unless it is PostgreSQL's own error) or a
harmless value. Either way proxies, catalog_tasks, object_tasks, proxy_lease_events and
proxy_lease_settings must be byte for byte what they were before the call.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tools.harness import CRON_DATABASE, ROOT, Database, alembic

# Where the table lives: docs/bad-input.md, the first table whose header is `| Call | Result |`.
BAD_INPUT_TABLE = Path(os.environ.get("PROXY_LEASES_BAD_INPUT_TABLE", ROOT / "docs" / "bad-input.md"))

# The tables a bad input must leave exactly as they were.
WATCHED_TABLES = ("proxies", "catalog_tasks", "object_tasks", "proxy_lease_events", "proxy_lease_settings")


@dataclass(frozen=True)
class Row:
    call: str
    result: str
    line: int
    # What the result cell says, parsed.
    sqlstate: str | None = None
    message: str | None = None
    postgres_error: bool = False
    value: str | None = None
    statements: tuple[str, ...] = field(default=())
    # "<result> before N; <result> from N": what PostgreSQL N and later give instead (the major, the row).
    from_version: tuple[int, "Row"] | None = None

    def on(self, major: int) -> "Row":
        """The row as documented for a server of this major version."""
        return self.from_version[1] if self.from_version and major >= self.from_version[0] else self


ERROR = re.compile(r'^`(?P<state>[0-9A-Z]{5})`\s*(?:"(?P<message>[^"]*)")?\s*(?P<pg>\*PostgreSQL\*)?$')
VALUE = re.compile(r"^`(?P<value>[^`]+)`$")
VERSIONED = re.compile(r"^(?P<before>.+?) before (?P<major>[0-9]+); (?P<later>.+) from (?P=major)$")
STATEMENT = re.compile(r"^\s*(SELECT|CALL|UPDATE|INSERT|DELETE|TRUNCATE|BEGIN)\b", re.IGNORECASE)


def split_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [cell.strip().replace("\\|", "|") for cell in cells[1:-1]]


def code(cell: str) -> str:
    if not (cell.startswith("`") and cell.endswith("`")):
        raise ValueError(f"not a code span: {cell!r}")
    return cell[1:-1]


def split_statements(call: str) -> tuple[str, ...]:
    """Split on ';' outside quotes; a bare function call becomes SELECT * FROM it."""
    parts, current, quoted = [], "", False
    for char in call:
        if char == "'":
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return tuple(part if STATEMENT.match(part) else f"SELECT * FROM {part}" for part in parts if part)


def parse_table(path: Path) -> list[Row]:
    """Every row of the first `| Call | Result |` table in path."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for start, line in enumerate(lines):
        if line.startswith("|") and split_cells(line) == ["Call", "Result"]:
            break
    else:
        raise AssertionError(f"no | Call | Result | table in {path}")
    rows = []
    for number, line in enumerate(lines[start + 2:], start + 3):
        if not line.startswith("|"):
            break
        call_cell, result_cell = split_cells(line)
        call = code(call_cell)
        if versioned := VERSIONED.match(result_cell):
            later = parse_result(path, number, call, versioned["later"])
            rows.append(dataclasses.replace(parse_result(path, number, call, versioned["before"]),
                                            result=result_cell, from_version=(int(versioned["major"]), later)))
        else:
            rows.append(parse_result(path, number, call, result_cell))
    return rows


def parse_result(path: Path, number: int, call: str, result_cell: str) -> Row:
    if match := ERROR.match(result_cell):
        row = Row(call, result_cell, number, sqlstate=match["state"], message=match["message"],
                  postgres_error=bool(match["pg"]))
    elif match := VALUE.match(result_cell):
        row = Row(call, result_cell, number, value=match["value"])
    else:
        raise AssertionError(f"{path}:{number}: result {result_cell!r} is neither "
                             f"`SQLSTATE` \"message\" nor `value`")
    return dataclasses.replace(row, statements=split_statements(call))


ROWS = parse_table(BAD_INPUT_TABLE)


# The scene every row runs in. The names are what the table's calls use.
SCENE_NAMES = ("held", "token", "old_token", "other", "other_token", "blocked", "blocked_token", "free")


def build_scene(conn: psycopg.Connection) -> dict[str, int]:
    run = conn.execute
    run("INSERT INTO proxies (address) SELECT 'http://10.0.0.' || n || ':3128' FROM generate_series(1, 5) n")
    held, old_token = run("SELECT proxy_id, lease_token FROM acquire_proxy('c10_1', '1 hour')").fetchone()
    assert run("SELECT release_proxy(%s, %s)", (held, old_token)).fetchone()[0] is True
    # Granted again, the same proxy: the legacy take, then a renewal to an hour.
    run("UPDATE proxies SET is_in_use = true, worker_id = 'c10_1' WHERE id = %s", (held,))
    token = run("SELECT lease_token FROM proxies WHERE id = %s", (held,)).fetchone()[0]
    run("SELECT renew_proxy_lease(%s, %s, '1 hour')", (held, token))
    other, other_token = run("SELECT proxy_id, lease_token FROM acquire_proxy('c1.b_2', '1 hour')").fetchone()
    blocked, blocked_token = run("SELECT proxy_id, lease_token FROM acquire_proxy('c2_1', '1 hour')").fetchone()
    assert run("SELECT block_proxy(%s, %s, 'HTTP 403 from shop.example', '1 hour')",
               (blocked, blocked_token)).fetchone()[0] is True
    free = run("SELECT min(id) FROM proxies WHERE NOT is_in_use AND NOT is_blocked").fetchone()[0]
    run("""INSERT INTO catalog_tasks (status, worker_id, heartbeat_at) VALUES
             ('processing', 'c10_1', now()), ('pending', NULL, NULL), ('done', 'c9_1', now() - interval '1 day')""")
    run("""INSERT INTO object_tasks (status, worker_id, heartbeat_at) VALUES
             ('processing', 'c1.b_2', now()), ('failed', 'c9_2', now() - interval '1 day')""")
    scene = dict(held=held, token=token, old_token=old_token, other=other, other_token=other_token,
                 blocked=blocked, blocked_token=blocked_token, free=free)
    return scene


def bind(call: str, scene: dict[str, int]) -> str:
    """Put the scene's ids and tokens in place of their names, outside quoted strings."""
    pieces = re.split(r"('(?:[^']|'')*')", call)
    names = re.compile(r"\b(" + "|".join(sorted(scene, key=len, reverse=True)) + r")\b")
    return "".join(piece if piece.startswith("'") else names.sub(lambda m: str(scene[m[1]]), piece)
                   for piece in pieces)


def snapshot(conn: psycopg.Connection) -> dict[str, str]:
    """Every row of the watched tables, as text, in a stable order."""
    return {table: conn.execute(sql.SQL("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') "
                                        "FROM {} t").format(sql.Identifier(table))).fetchone()[0]
            for table in WATCHED_TABLES}


def shown(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown_rows(rows: list[tuple]) -> str:
    if not rows:
        return "no row"
    texts = [shown(row[0]) if len(row) == 1 else "(" + ", ".join(shown(v) for v in row) + ")" for row in rows]
    return texts[0] if len(texts) == 1 else "[" + "; ".join(texts) + "]"


@dataclass
class Outcome:
    sqlstate: str | None = None
    message: str | None = None
    hint: str | None = None
    detail: str | None = None
    value: str | None = None
    changed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        what = (f"{self.sqlstate} {self.message!r} hint={self.hint!r}" if self.sqlstate
                else f"result {self.value}")
        return what + (f"; CHANGED {', '.join(self.changed)}" if self.changed else "; nothing changed")


def observe(database: Database, row: Row, scene: dict[str, int]) -> Outcome:
    """Run the row's statements, the last one watched: what it raised or returned, and what it changed."""
    statements = [bind(statement, scene) for statement in row.statements]
    outcome = Outcome()
    with database.connect() as conn, database.connect() as watcher:
        for statement in statements[:-1]:
            conn.execute(statement)
        before = snapshot(watcher)
        try:
            outcome.value = shown_rows(conn.execute(statements[-1]).fetchall())
        except psycopg.Error as error:
            outcome.sqlstate = error.sqlstate
            outcome.message = error.diag.message_primary
            outcome.hint = error.diag.message_hint
            outcome.detail = error.diag.message_detail
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        after = snapshot(watcher)
    outcome.changed = [table for table in WATCHED_TABLES if before[table] != after[table]]
    return outcome


# --- the databases: one migrated template with the scene, one copy per row ------------------------

_copies = itertools.count(1)


@pytest.fixture(scope="module")
def scene_template(pg_server):
    """A database at head holding the scene, to copy from; and the scene's ids and tokens."""
    name = "bad_input_scene"
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    alembic(pg_server.url(name), "upgrade", "head", cron="off")
    with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
        scene = build_scene(conn)
    yield name, scene
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def scene_db(pg_server, scene_template):
    template, scene = scene_template
    name = f"bad_input_{next(_copies)}"
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))
    database = Database(pg_server.url(name))
    # Fresh signs of life, however long the module has run: nothing may be stale.
    database.run("UPDATE catalog_tasks SET heartbeat_at = clock_timestamp() WHERE status = 'processing'")
    database.run("UPDATE object_tasks SET heartbeat_at = clock_timestamp() WHERE status = 'processing'")
    yield database, scene
    with psycopg.connect(pg_server.url(CRON_DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- the table itself --------------------------------------------------------------------------------

def test_the_table_is_well_formed(record_property):
    calls = [row.call for row in ROWS]
    assert len(calls) == len(set(calls)), "a call is listed twice"
    for row in ROWS:
        assert row.sqlstate or row.value, row
        if row.sqlstate and not row.postgres_error:
            assert row.message, f"line {row.line}: an error of proxy-leases names a fragment of its message"
    record_property("bad_inputs", len(ROWS))
    print(f"\n{len(ROWS)} bad inputs in {BAD_INPUT_TABLE.relative_to(ROOT)}")


def test_the_scene_is_armed(scene_db):
    """What makes 'nothing changes' mean something: workers hold proxies, tasks are in processing,
    a proxy is blocked, and the prefix trap is set (LIKE 'c1_%' would free both held proxies)."""
    database, scene = scene_db
    assert database.one("SELECT count(*) FROM proxies WHERE is_in_use") == 2
    assert database.one("SELECT count(*) FROM proxies WHERE worker_id LIKE 'c1_%'") == 2
    assert database.one("SELECT is_blocked AND blocked_until > now() FROM proxies WHERE id = %s",
                        (scene["blocked"],)) is True
    assert database.one("SELECT lease_token FROM proxies WHERE id = %s", (scene["held"],)) == scene["token"]
    assert scene["old_token"] < scene["token"]
    assert database.one("SELECT count(*) FROM (SELECT FROM catalog_tasks WHERE status = 'processing' "
                        "UNION ALL SELECT FROM object_tasks WHERE status = 'processing') t") == 2
    assert database.one("SELECT count(*) FROM proxy_lease_events") > 0
    assert database.one("SELECT count(*) FROM stuck_proxies") == 0


def check(row: Row, outcome: Outcome) -> None:
    context = f"{BAD_INPUT_TABLE.name}:{row.line} `{row.call}`: documented {row.result}, got {outcome}"
    if row.sqlstate:
        assert outcome.sqlstate == row.sqlstate, context
        assert row.message is None or row.message in outcome.message, context
        if not row.postgres_error:
            assert outcome.hint, context
    else:
        assert outcome.sqlstate is None, context
        assert outcome.value == row.value, context
    assert outcome.changed == [], context


@pytest.mark.parametrize("row", [pytest.param(row, id=row.call) for row in ROWS])
def test_bad_input(scene_db, row):
    database, scene = scene_db
    row = row.on(database.one("SELECT current_setting('server_version_num')::int / 10000"))
    check(row, observe(database, row, scene))


@pytest.mark.parametrize("call, result, wrong", [
    ("release_proxy(held, old_token)", "`true`", "a value other than the documented one"),
    ("acquire_proxy(NULL)", '`22004` "malformed worker_id"', "another SQLSTATE"),
    ("acquire_proxy(NULL)", '`22023` "worker_id must not be NULL"', "another message"),
    ("acquire_proxy('c3_1', 'infinity')", "`22007` \"interval\"", "no HINT where one is due"),
    ("release_proxy(held, token)", "`true`", "a change"),
])
def test_every_kind_of_row_can_fail(scene_db, call, result, wrong, tmp_path):
    """The checker refuses a row whose outcome differs from the documented one in any way."""
    database, scene = scene_db
    table = tmp_path / "table.md"
    table.write_text(f"| Call | Result |\n|---|---|\n| `{call}` | {result} |\n", encoding="utf-8")
    (row,) = parse_table(table)
    with pytest.raises(AssertionError):
        check(row, observe(database, row, scene))


def test_a_block_reason_is_cut_to_1000_characters(scene_db):
    database, scene = scene_db
    assert database.one("SELECT block_proxy(%s, %s, repeat('x', 10000))", (scene["held"], scene["token"])) is True
    assert database.one("SELECT length(blocked_reason) FROM proxies WHERE id = %s", (scene["held"],)) == 1000
