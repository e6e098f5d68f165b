"""The fresh-install script: proxy-leases at head for a database it was never installed in, each object
created once, in its head definition; and the short pg_cron script that goes with it.

`proxy-leases sql` prints the first, `proxy-leases sql --cron` the second; `proxy-leases sql FROM:TO` (and
`sql --replay`) still print Alembic's replay of the revisions. docs/offline-install.md explains the plan
and why it installs what an online upgrade installs. In short:

* The plan is recorded, not written by hand: every revision's upgrade() runs, base to head, against a
  stand-in that records which frozen files it runs, and how (in its transaction, outside one, or a
  pg_cron step). A revision that does anything else stops the plan (PlanError) instead of being missed.
* Of the versioned definitions (functions/, procedures/, views/: name.vN.sql, logical names as in
  sql/README.md) only the last version run of each object is kept; a version must keep its object's
  signature, or the older one would survive.
* The other files keep their revision order, split in two:
  - phase 1: the files that name no versioned object (tables, columns, settings, backfills, indexes built
    CONCURRENTLY). They run as the replay runs them, each revision's in a transaction of its own (or
    outside one), before any definition or trigger of proxy-leases exists;
  - phase 2, one transaction: the head definitions, then the files that name them (triggers, grants,
    comments), then the revision record. A file that names what a phase-2 file creates, or adds columns
    to a table a phase-2 file added columns to (column order), is phase 2 as well.
* Two explicit rules, each checked by the plan and by tests/upgrades/test_fresh_install.py:
  - REVIEWED_DATA_STEPS: a file that writes rows of a table that had triggers when the replay ran it
    runs here before those triggers exist; what the replay's (frozen) trigger versions did to those
    rows beyond the statement is written next to it, with the SQL that does the same where there was
    something. A new such file stops the plan until it is reviewed.
  - Lock files (a DO block that takes the short, retried LOCK TABLEs, 0006_lease_api_locks.sql) run once
    per transaction: in a phase-1 transaction where the replay ran one, if another of its files names a
    locked table; and the last one the revisions use at the start of phase 2, which must lock them all.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql

from proxy_leases import __version__
from proxy_leases.migrations import deploy_lock, pg_cron, sql_files
from proxy_leases.migrations.options import DEFAULT_LOCK_TIMEOUT
from proxy_leases.migrations.pg_cron import _literal
from proxy_leases.migrations.version_table import LEGACY_TABLE, VERSION_TABLE, legacy_record_query

MIGRATIONS = Path(__file__).resolve().parent
VERSIONED = re.compile(r"(?P<kind>functions|procedures|views)/(?P<object>[^/]+)\.v(?P<version>[0-9]+)\.sql")
# The psql variable each guarded step sets before it decides whether it still has to run.
STEP_VARIABLE = "proxy_leases_step_to_do"


class PlanError(RuntimeError):
    """The revisions do something the fresh-install plan does not know how to order (yet)."""


@dataclass(frozen=True)
class DataStep:
    """A reviewed file that changes rows: what the replay's triggers did to them, and what repeats it here."""

    replay: str
    after: str | None = None


# Phase-1 files that write rows of a table that had triggers when the replay ran them. Here they run
# before any trigger of proxy-leases exists; in the replay, the trigger versions of their day fired.
REVIEWED_DATA_STEPS: dict[str, DataStep] = {
    "0004_lease_backfill.sql": DataStep(
        replay="ran under version 1 of tg_proxies__keep_lease_consistent (0003_lease_triggers.sql), which "
               "changed nothing the two UPDATEs did not: on a proxy held by its worker it keeps the lease "
               "the statement sets, and a freed half-held row already has no worker and no lease."),
    "0007_lease_api_backfill.sql": DataStep(
        replay="ran under version 2 of tg_proxies__keep_lease_consistent (0006_lease_api_triggers.sql fires "
               "it on lease_token), which kept the token the statement sets and, on a proxy both held and "
               "blocked, stamped blocked_at with the time: the UPDATE below does that stamp. Nothing else "
               "fired: the announce trigger's WHEN is false for held proxies, and the audit trail comes in "
               "0010.",
        after="UPDATE public.proxies SET blocked_at = clock_timestamp()\n"
              " WHERE is_in_use AND is_blocked IS TRUE AND blocked_at IS NULL;"),
    "0010_lease_events_table.sql": DataStep(
        replay="fired no trigger with its UPDATE of proxies.renewed_at: renewed_at was not in the column list "
               "of the keep_lease_consistent trigger of 0006_lease_api_triggers.sql (0010_lease_events_triggers.sql "
               "adds it later), the announce trigger's WHEN is false for held proxies, and the audit triggers "
               "came after it."),
    "0022_self_healing_cut_leases.sql": DataStep(
        replay="cut the leases ending beyond the new bound (a day, or lease_duration if longer), or never, under "
               "version 5 of tg_proxies__keep_lease_consistent, which kept each worker and token and stamped "
               "renewed_at, as for any new lease end still ahead; no audit event (a lease end is not one). A fresh "
               "install has no such lease: the backfill (0004_lease_backfill.sql) gave every held proxy now() + "
               "lease_duration, within the bound, so its UPDATE finds no row and nothing is left to do after it."),
}


# ---------------------------------------------------------------------------------------------------------
# Reading SQL: comments out, literals emptied, dollar-quoted bodies kept as code or dropped.

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


def code_of(text: str, *, bodies: bool = True, literals: bool = False) -> str:
    """`text` without its comments, its string literals emptied ('', or kept with literals=True), and its
    dollar-quoted bodies kept as code (themselves cleaned the same way) or, with bodies=False, dropped."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            j = i + 1
            while j < n:
                if escapes and text[j] == "\\":
                    j += 2
                elif text[j] == "'" and text.startswith("''", j):
                    j += 2
                elif text[j] == "'":
                    break
                else:
                    j += 1
            out.append(text[i:j + 1] if literals else "''")
            i = j + 1
        elif c == '"':
            j = i + 1
            while j < n and not (text[j] == '"' and not text.startswith('""', j)):
                j += 2 if text.startswith('""', j) else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "$" and (match := _DOLLAR_TAG.match(text, i)) and not (i > 0 and (text[i - 1].isalnum()
                                                                                    or text[i - 1] == "_")):
            tag = match.group(0)
            end = text.find(tag, match.end())
            if end < 0:
                raise PlanError(f"unterminated {tag} quote")
            out.append(tag + (code_of(text[match.end():end], literals=literals) if bodies else " ") + tag)
            i = end + len(tag)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def words(code: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", code)}


_REG_LITERAL = re.compile(r"'((?:[^']|'')*)'\s*::\s*reg(?:procedure|proc|class)\b"
                          r"|\bto_reg(?:procedure|proc|class)\s*\(\s*'((?:[^']|'')*)'", re.I)


def names_used(text: str) -> set[str]:
    """The names a file's SQL uses: its code, and the literals it casts to regprocedure or regclass (a
    function named in a DO block as 'public.f(bigint)'::regprocedure). Not its comments, nor the other
    literals: COMMENT texts and messages name functions without using them."""
    found = words(code_of(text))
    for match in _REG_LITERAL.finditer(code_of(text, literals=True)):
        found |= words(match.group(1) or match.group(2) or "")
    return found


def _balanced(code: str, start: int) -> str:
    """The text between the parenthesis at `start` and the one that closes it."""
    depth = 0
    for i in range(start, len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        if depth == 0:
            return code[start + 1:i]
    raise PlanError("unbalanced parentheses")


_DEFINITION = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE|VIEW)\s+(?:public\.)?(\w+)", re.I)
_TRIGGER = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+(\w+)\s.*?\bON\s+(?:public\.)?(\w+)",
                      re.I | re.S)
_CREATED = re.compile(r"\bCREATE\s+(?:UNIQUE\s+)?(?:OR\s+REPLACE\s+)?(TABLE|SEQUENCE|INDEX|VIEW|FUNCTION|PROCEDURE)"
                      r"\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:public\.)?(\w+)", re.I)
_ALTER_TABLE = re.compile(r"^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?(?:public\.)?(\w+)", re.I)
_ADD_COLUMN = re.compile(r"\bADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
_WRITES = re.compile(r"\b(?:UPDATE\s+(?:ONLY\s+)?|INSERT\s+INTO\s+|DELETE\s+FROM\s+(?:ONLY\s+)?|TRUNCATE\s+(?:TABLE\s+)?)"
                     r"(?:public\.)?(\w+)", re.I)
_LOCKS = re.compile(r"\bLOCK\s+TABLE\s+(.+?)\s+IN\b", re.I | re.S)
_DROPS = re.compile(r"\bDROP\s+(FUNCTION|PROCEDURE|VIEW)\s+(?:IF\s+EXISTS\s+)?(?:public\.)?(\w+)", re.I)


def definitions_in(text: str) -> list[tuple[str, str, str]]:
    """(kind, name, arguments) of each CREATE [OR REPLACE] FUNCTION, PROCEDURE or VIEW of a file."""
    code = code_of(text, bodies=False)
    found = []
    for match in _DEFINITION.finditer(code):
        kind = match.group(1).lower()
        arguments = "" if kind == "view" else " ".join(_balanced(code, code.index("(", match.end())).split())
        found.append((kind, match.group(2).lower(), arguments))
    return found


def statements(code: str) -> list[str]:
    return [statement for statement in code.split(";") if statement.strip()]


def added_columns(text: str) -> list[tuple[str, str]]:
    """(table, column) of every ALTER TABLE ... ADD COLUMN of a file."""
    added = []
    for statement in statements(code_of(text, bodies=False)):
        table = _ALTER_TABLE.match(statement)
        if table:
            added += [(table.group(1).lower(), column.lower()) for column in _ADD_COLUMN.findall(statement)]
    return added


def created_names(text: str) -> set[str]:
    """The names a file creates: tables, sequences, indexes, views, functions, triggers, columns."""
    code = code_of(text, bodies=False)
    names = {name.lower() for _, name in _CREATED.findall(code)}
    names |= {name.lower() for name, _ in _TRIGGER.findall(code)}
    return names | {column for _, column in added_columns(text)}


def triggered_tables(text: str) -> set[str]:
    return {table.lower() for _, table in _TRIGGER.findall(code_of(text, bodies=False))}


def written_tables(text: str) -> set[str]:
    """Tables whose rows the file writes, DO blocks included (not what EXECUTE builds from a string)."""
    found = set()
    for match in _WRITES.finditer(code_of(text)):
        if match.group(1).upper() not in ("ON", "OF", "OR", "SET"):
            found.add(match.group(1).lower())
    return found


def locked_tables(text: str) -> set[str]:
    """The tables of a lock file (a lone DO block that takes LOCK TABLEs), or the empty set."""
    outer = code_of(text, bodies=False)
    if not re.fullmatch(r"\s*DO\s+(\$\w*\$)\s*\1\s*;\s*", outer):
        return set()
    tables = set()
    for listed in _LOCKS.findall(code_of(text)):
        tables |= {name.strip().removeprefix("public.").lower() for name in listed.split(",")}
    return tables


def probe_of(text: str) -> str | None:
    """A query that is true while the objects of a creating transaction are still to be made; None when
    the files create nothing (they are safe to run again); PlanError when neither can be told."""
    code = code_of(text, bodies=False)
    if not re.search(r"\b(CREATE|ADD|INSERT)\b", code, re.I):
        return None
    for statement in statements(code):
        created = re.match(r"\s*CREATE\s+(?:UNLOGGED\s+)?(TABLE|SEQUENCE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)",
                           statement, re.I)
        if created:
            return f"SELECT to_regclass({_literal(created.group(2))}) IS NULL AS {STEP_VARIABLE}"
        table, columns = _ALTER_TABLE.match(statement), _ADD_COLUMN.findall(statement)
        if table and columns:
            return (f"SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = "
                    f"to_regclass({_literal('public.' + table.group(1))}) AND attname = {_literal(columns[0])} "
                    f"AND NOT attisdropped) AS {STEP_VARIABLE}")
        if re.match(r"\s*(CREATE|ALTER|INSERT)\b", statement, re.I):
            break
    raise PlanError("a transaction of the plan creates something, but its first statement is not a CREATE TABLE, "
                    "SEQUENCE or VIEW, or an ADD COLUMN, so a second run cannot tell whether it ran: add a probe "
                    "for it to fresh_install.probe_of")


# ---------------------------------------------------------------------------------------------------------
# Recording what each revision runs.

@dataclass(frozen=True)
class Step:
    """One call of a revision's upgrade(): run_sql ("sql"), run_sql_outside_transaction ("outside"), or a
    pg_cron step ("cron", files = the pg_cron function's name)."""

    revision: str
    kind: str
    files: tuple[str, ...]


class _NoOp:
    """What a revision gets as `op` while it is recorded: the files it names are all it may use."""

    def __init__(self, revision: str) -> None:
        self._revision = revision

    def __getattr__(self, name: str):
        raise PlanError(f"revision {self._revision}: upgrade() uses op.{name} itself; the fresh-install plan "
                        "knows only run_sql, run_sql_outside_transaction and the pg_cron steps "
                        "(proxy_leases/migrations/fresh_install.py)")


def script_directory() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return ScriptDirectory.from_config(config)


def recorded_steps(script: ScriptDirectory | None = None) -> tuple[list[str], list[Step]]:
    """(revisions base to head, every step of their upgrade()), by running each upgrade() on a recorder.

    Each revision file is loaded afresh, apart from the modules Alembic keeps, and its names for op,
    run_sql, run_sql_outside_transaction and the pg_cron steps are swapped for recorders."""
    script = script or script_directory()
    if len(script.get_heads()) != 1:
        raise PlanError(f"the revisions have {len(script.get_heads())} heads; the fresh-install plan needs one")
    revisions = list(reversed(list(script.walk_revisions("base", "heads"))))
    steps: list[Step] = []
    for revision in revisions:
        spec = importlib.util.spec_from_file_location(f"_proxy_leases_plan_{revision.revision}", revision.path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def recorder(kind: str, name: str | None = None, rev: str = revision.revision):
            def record(_op, *files: str, **_kw) -> None:
                steps.append(Step(rev, kind, (name,) if kind == "cron" else tuple(files)))
            return record

        module.op = _NoOp(revision.revision)
        for name, value in list(vars(module).items()):
            if value is sql_files.run_sql:
                setattr(module, name, recorder("sql"))
            elif value is sql_files.run_sql_outside_transaction:
                setattr(module, name, recorder("outside"))
            elif inspect.isfunction(value) and value.__module__ == pg_cron.__name__:
                setattr(module, name, recorder("cron", value.__name__))
        module.upgrade()
    return [revision.revision for revision in revisions], steps


# ---------------------------------------------------------------------------------------------------------
# The plan.

@dataclass
class Group:
    """A phase-1 step of the script: one revision's files, in a transaction of their own or outside one."""

    revision: str
    transaction: bool
    files: list[str]
    probe: str | None = None        # a creating transaction: skipped when this query says it ran


@dataclass
class Plan:
    head: str
    revisions: list[str]
    steps: list[Step]
    phase1: list[Group]
    lock_file: str                  # taken at the start of phase 2
    definitions: list[str]          # functions and procedures, head versions, created first in phase 2
    phase2: list[str]               # then these, in order: views (head versions) and the files that name them
    superseded: dict[str, str] = field(default_factory=dict)   # earlier version -> the head version kept
    phase2_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """Every file the script includes, in order (a lock file once per transaction that takes it)."""
        return ([file for group in self.phase1 for file in group.files] + [self.lock_file] + self.definitions
                + self.phase2)

    @property
    def cron_steps(self) -> list[Step]:
        return [step for step in self.steps if step.kind == "cron"]


def build_plan(script: ScriptDirectory | None = None) -> Plan:
    revisions, steps = recorded_steps(script)
    texts: dict[str, str] = {}

    def text(name: str) -> str:
        if name not in texts:
            texts[name] = sql_files.read_sql(name)   # refuses a file that is not pinned as the revisions ran it
        return texts[name]

    run = [(index, step, name) for index, step in enumerate(steps) if step.kind != "cron" for name in step.files]

    # The head version of each versioned object, and the SQL names it defines.
    head_version: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    signature: dict[str, list[tuple[str, str, str]]] = {}
    for position, (_, step, name) in enumerate(run):
        match = VERSIONED.fullmatch(name)
        if not match:
            continue
        key = f"{match['kind']}/{match['object']}"
        if step.kind != "sql":
            raise PlanError(f"{name} runs outside a transaction; definitions must run in one")
        defined = definitions_in(text(name))
        if not defined:
            raise PlanError(f"{name} defines no function, procedure or view")
        if key in signature and signature[key] != defined:
            raise PlanError(f"{name} defines {defined}, an earlier version of it {signature[key]}: a new signature is "
                            "a new object beside the old one, which the head still has; give it a file of its own")
        signature[key] = defined
        head_version[key] = name
        first_seen.setdefault(key, position)
    names_of = {key: {name for _, name, _ in signature[key]} for key in signature}
    versioned_names = set().union(*names_of.values()) if names_of else set()

    superseded = {name: head_version[f"{m['kind']}/{m['object']}"] for _, _, name in run
                  if (m := VERSIONED.fullmatch(name)) and name != head_version[f"{m['kind']}/{m['object']}"]}

    # Phase 2: the other files that name a versioned object, or something a phase-2 file created, or add
    # columns to a table a phase-2 file added columns to. Phase 1: the rest.
    phase2_entries: set[int] = set()
    reasons: dict[str, str] = {}
    phase2_created: set[str] = set()
    phase2_columns_of: set[str] = set()
    triggers_on: set[str] = set()           # tables with a trigger by then, in the replay
    data_files: list[tuple[str, set[str]]] = []
    for position, (_, step, name) in enumerate(run):
        if VERSIONED.fullmatch(name):
            continue
        body = text(name)
        dropped = {m.group(2).lower() for m in _DROPS.finditer(code_of(body, bodies=False))} & versioned_names
        if dropped:
            raise PlanError(f"{name} drops {sorted(dropped)}: the fresh-install plan does not yet leave out an object "
                            "the head no longer has")
        named = names_used(body)
        reason = None
        if named & versioned_names:
            reason = "names " + ", ".join(sorted(named & versioned_names))
        elif named & phase2_created:
            reason = "names what an earlier phase-2 file creates: " + ", ".join(sorted(named & phase2_created))
        elif {table for table, _ in added_columns(body)} & phase2_columns_of:
            reason = "adds columns after a phase-2 file did, to the same table"
        written = written_tables(body) & triggers_on
        if written:
            data_files.append((name, written))
        triggers_on |= triggered_tables(body)
        if reason is None:
            continue
        if step.kind != "sql":
            raise PlanError(f"{name} runs outside a transaction and {reason}: the plan has no place for it yet")
        phase2_entries.add(position)
        reasons.setdefault(name, reason)
        phase2_created |= created_names(body)
        phase2_columns_of |= {table for table, _ in added_columns(body)}

    for name, tables in data_files:
        if name not in REVIEWED_DATA_STEPS:
            raise PlanError(
                f"{name} writes rows of {', '.join(sorted(tables))}, which had triggers when the replay ran it, "
                "and the fresh-install plan runs it with other versions of them, or none. Review what the replay's "
                "triggers did to those rows and add it to fresh_install.REVIEWED_DATA_STEPS (until then, "
                "`proxy-leases sql --replay` prints the replay).")
    for name in REVIEWED_DATA_STEPS:
        if name in reasons:
            raise PlanError(f"{name} is reviewed as a phase-1 file, but is in phase 2 ({reasons[name]})")

    # Phase 1: each revision's remaining files, in its transaction (or outside one).
    lock_tables = {name: tables for _, _, name in run if (tables := locked_tables(text(name)))}
    phase1: list[Group] = []
    for position, (index, step, name) in enumerate(run):
        if position in phase2_entries or VERSIONED.fullmatch(name):
            continue
        transaction = step.kind == "sql"
        last = phase1[-1] if phase1 else None
        if last and last.revision == step.revision and last.transaction and transaction:
            last.files.append(name)
        else:
            phase1.append(Group(step.revision, transaction, [name]))
    kept: list[Group] = []
    for group in phase1:
        if group.transaction:
            others = [name for name in group.files if name not in lock_tables]
            named = set().union(*(names_used(text(name)) for name in others)) if others else set()
            files, locked = [], False
            for name in group.files:
                if name in lock_tables:
                    if locked or not (lock_tables[name] & named):
                        continue
                    locked = True
                files.append(name)
            if not others:
                continue
            group.files = files
            group.probe = probe_of("\n".join(text(name) for name in others))
        kept.append(group)

    if not lock_tables:
        raise PlanError("no revision takes its locks with a lock file; phase 2 needs one")
    lock_file = [name for _, _, name in run if name in lock_tables][-1]
    missing = set().union(*lock_tables.values()) - lock_tables[lock_file]
    if missing:
        raise PlanError(f"{lock_file}, the last lock file, does not lock {sorted(missing)}, which others do")

    # Phase 2: functions and procedures first (their bodies are not checked then: see the script), views
    # where everything they read exists and before the first file that names them, the files in order.
    files2 = [name for position, (_, _, name) in enumerate(run) if position in phase2_entries]
    definitions = [head_version[key] for key in sorted(head_version, key=first_seen.get)
                   if not key.startswith("views/")]
    views = [key for key in sorted(head_version, key=first_seen.get) if key.startswith("views/")]
    placed: list[tuple[int, int, str]] = []    # (index into files2, order, view file)
    view_at: dict[str, int] = {}
    for order, key in enumerate(views):
        named = names_used(text(head_version[key]))
        earliest = max([i + 1 for i, name in enumerate(files2)
                        if {column for _, column in added_columns(text(name))} & named] + [0])
        earliest = max([earliest] + [view_at[other] for other in views[:order] if names_of[other] & named])
        later = [other for other in views[order + 1:] if names_of[key] & names_used(text(head_version[other]))]
        latest = min([i for i, name in enumerate(files2) if names_used(text(name)) & names_of[key]]
                     + [len(files2)])
        if earliest > latest or any(view_at.get(other, len(files2)) < earliest for other in later):
            raise PlanError(f"{head_version[key]} needs a column added by a phase-2 file after one that names it")
        view_at[key] = earliest
        placed.append((earliest, order, head_version[key]))
    phase2: list[str] = []
    for i in range(len(files2) + 1):
        phase2 += [view for at, _, view in sorted(placed) if at == i]
        if i < len(files2):
            phase2.append(files2[i])

    return Plan(head=revisions[-1], revisions=revisions, steps=steps, phase1=kept, lock_file=lock_file,
                definitions=definitions, phase2=phase2, superseded=superseded, phase2_reasons=reasons)


# ---------------------------------------------------------------------------------------------------------
# The scripts.

def version_table_sql(head: str) -> tuple[str, str]:
    """(Alembic's CREATE TABLE for the version table, the INSERT of `head`), as Alembic writes them."""
    from alembic.runtime.migration import MigrationContext
    import io

    buffer = io.StringIO()
    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(logging.WARNING)   # not "Generating static SQL": this is no Alembic run
    try:
        context = MigrationContext.configure(dialect_name="postgresql", opts={
            "as_sql": True, "output_buffer": buffer, "version_table": VERSION_TABLE})
    finally:
        quiet.setLevel(level)
    context._ensure_version_table()
    insert = sa.insert(context._version).values(version_num=head)
    rendered = insert.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return buffer.getvalue().strip().rstrip(";").strip(), f"{rendered};"


def _comment(text: str) -> list[str]:
    """`text` as comment lines; a `command` stays on one line."""
    kept = re.sub(r"`[^`]*`", lambda quoted: quoted.group(0).replace(" ", "\0"), text)
    return [line.replace("\0", " ") for line in textwrap.wrap(
        kept, width=108, initial_indent="-- ", subsequent_indent="-- ", break_on_hyphens=False,
        break_long_words=False)]


def _marker(name: str, note: str | None = None) -> list[str]:
    return [f"-- file: {name}"] + (_comment(f"({note})") if note else [])


def _included(name: str, note: str | None = None) -> list[str]:
    return [*_marker(name, note), sql_files.read_sql(name).rstrip("\n"), ""]


def _refusal(plan: Plan) -> str:
    return f"""DO $proxy_leases_fresh_install$
DECLARE
    v_revision text;
    v_table text := {_literal(VERSION_TABLE)};
BEGIN
    IF to_regclass({_literal(VERSION_TABLE)}) IS NOT NULL THEN
        v_revision := (SELECT min(version_num) FROM {VERSION_TABLE});
    END IF;
    IF v_revision IS NULL AND to_regclass({_literal(LEGACY_TABLE)}) IS NOT NULL THEN
        v_table := {_literal(LEGACY_TABLE)};   -- where installs before 0.17 recorded themselves
        BEGIN
            v_revision := ({legacy_record_query(plan.revisions)});
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;   -- the fleet's own table, closed to this role: not proxy-leases'
        END;
    END IF;
    IF v_revision IS NOT NULL THEN
        RAISE EXCEPTION 'proxy-leases is already installed in database % (revision %, recorded in %)',
                        current_database(), v_revision, v_table
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'This script installs proxy-leases {__version__} ({plan.head}) where it was never installed. '
                           'Nothing was changed.',
                  HINT = format('Print the upgrade from where the database is instead: proxy-leases sql %s:head', v_revision);
    END IF;
    IF to_regclass('public.proxy_leases_adopted_tables') IS NOT NULL THEN
        RAISE NOTICE 'proxy-leases: an earlier run of this script stopped midway; the steps it finished are skipped';
    END IF;
END
$proxy_leases_fresh_install$;"""


def _guarded(number: int, total: int, title: str, probe: str, body: list[str]) -> list[str]:
    return [f"{probe} \\gset", f"\\if :{STEP_VARIABLE}", *body, "\\else",
            f"\\echo 'proxy-leases: step {number} of {total} ({title}) was finished by an earlier run: skipped'",
            "\\endif"]


def fresh_install_script(plan: Plan | None = None, *, lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
                         deploy_wait: str = deploy_lock.DEFAULT_WAIT, cron_mode: str = "auto") -> str:
    plan = plan or build_plan()
    total = len(plan.phase1) + 1
    create_table, insert = version_table_sql(plan.head)
    functions = sum(1 for name in plan.definitions for kind, _, _ in definitions_in(sql_files.read_sql(name))
                    if kind in ("function", "procedure"))
    views = sum(1 for name in plan.phase2 if name.startswith("views/")
                for _ in definitions_in(sql_files.read_sql(name)))
    cron_revisions = sorted({step.revision for step in plan.cron_steps})
    lines = [
        f"-- proxy-leases {__version__}: fresh install at {plan.head}, for a database proxy-leases was never "
        "installed in",
        "--",
        "-- What `proxy-leases upgrade` does to such a database (the fleet's tables proxies, catalog_tasks and",
        "-- object_tasks may hold data: they are adopted, after the same checks), with each function, procedure and",
        f"-- view created once, in its head version: {functions} functions and procedures, {views} views. Written from the",
        f"-- revisions by proxy_leases/migrations/fresh_install.py (docs/offline-install.md): "
        f"{len(plan.revisions)} revisions, {len(set(plan.files))} files,",
        f"-- {len(plan.superseded)} earlier versions of definitions left out. `proxy-leases sql --replay` prints "
        "the replay of every revision.",
        "--",
        "-- Apply it with psql, connected to PostgreSQL itself (not through PgBouncer), as the role that owns the",
        "-- fleet's tables:  psql -X -f install.sql postgresql://owner@host:5432/fleet",
        "-- It stops at the first error (ON_ERROR_STOP, set below). It refuses, changing nothing, a database where",
        f"-- proxy-leases is installed ({VERSION_TABLE} holds its revision, or {LEGACY_TABLE} does, from",
        "-- before 0.17): print `proxy-leases sql <that revision>:head` for it instead.",
        "--",
        f"-- Steps, each in a transaction of its own unless marked: it takes the deploy lock (waiting up to {deploy_wait}),",
        f"-- then every lock on the fleet's tables in short attempts until lock_timeout ({lock_timeout}).",
    ]
    for number, group in enumerate(plan.phase1, 1):
        how = "" if group.transaction else ", outside a transaction"
        lines += _comment(f"  {number}. {group.revision}{how}: {', '.join(group.files)}")
    lines += [
        f"--   {total}. the definitions at head, then the files that use them, and the revision record",
        "-- If it stops midway (a lock it could not have within lock_timeout, a role it may not create), fix the",
        "-- cause and run this script again (not `proxy-leases upgrade`, which would start from the first revision):",
        "-- the steps that finished are skipped, the others run again.",
        "--",
        *_comment("It schedules NOTHING: " + (
            "cron=off was given: run CALL public.run_lease_maintenance() every minute from your own scheduler."
            if cron_mode == "off" else
            f"the pg_cron jobs (the pg_cron steps of {', '.join(cron_revisions)}) are the separate script of "
            "`proxy-leases sql --cron`, run in pg_cron's database. Until it has run, nothing runs the maintenance: "
            "stuck proxies are not freed, stale tasks not requeued.")),
    ]
    lines += [
        "",
        "\\set ON_ERROR_STOP on",
        "",
        "-- The deploy lock, as `proxy-leases upgrade` takes it: one deploy of this database at a time.",
        deploy_lock.take_sql(deploy_wait) + ";",
        "",
        f"SET lock_timeout = {_literal(lock_timeout)};",
        "",
        "-- Refuse a database where proxy-leases is installed, before anything changes.",
        _refusal(plan),
        "",
    ]
    for number, group in enumerate(plan.phase1, 1):
        if not group.transaction:
            lines += [f"-- Step {number} of {total}: {group.revision}, outside a transaction: each statement commits on its",
                      "-- own (CREATE INDEX CONCURRENTLY cannot run in one), and all are safe to run again. Their",
                      "-- IF EXISTS / IF NOT EXISTS notices (\"... skipping\") are not news: not shown.", "",
                      "SET client_min_messages = warning;", ""]
            for name in group.files:
                lines += _included(name)
            lines += ["RESET client_min_messages;", ""]
            continue
        lines += [f"-- Step {number} of {total}: {group.revision}", ""]
        body = ["BEGIN;", ""]
        for name in group.files:
            note = ("the short, retried locks of this transaction" if locked_tables(sql_files.read_sql(name))
                    else None)
            body += _included(name, note)
            review = REVIEWED_DATA_STEPS.get(name)
            if review:
                body += _comment(f"In the replay, {name} {review.replay}")
                body += [review.after, ""] if review.after else [""]
        body += ["COMMIT;"]
        lines += (_guarded(number, total, group.revision, group.probe, body) if group.probe else body) + [""]

    lines += [
        f"-- Step {total} of {total}: every function, procedure and view in its head version, then the files that",
        "-- use them (triggers, grants, comments, the columns and settings that came with them), in revision",
        "-- order, then the revision record: one transaction.",
        "",
        "BEGIN;",
        "",
        *_included(plan.lock_file, "the short, retried locks of this transaction"),
        "-- A function body is checked when it runs rather than now, as pg_dump does: a body may read a",
        "-- view or a column made further down. The views themselves are checked, in the order they need.",
        "SET LOCAL check_function_bodies = off;",
        "",
    ]
    left_out: dict[str, list[str]] = {}
    for earlier, head in plan.superseded.items():
        left_out.setdefault(head, []).append(VERSIONED.fullmatch(earlier)["version"])
    for name in plan.definitions + plan.phase2:
        note = None
        if name in left_out:
            versions = sorted(left_out[name], key=int)
            note = "head version; " + ("v" + versions[0] if len(versions) == 1 else f"v{versions[0]}-v{versions[-1]}") \
                   + " left out"
        elif name in plan.phase2_reasons:
            note = f"after the definitions: {plan.phase2_reasons[name]}"
        lines += _included(name, note)
    lines += [
        *_comment(f"The revision record, as Alembic keeps it (an empty {VERSION_TABLE} that `downgrade base` "
                  "left is used as it is)."),
        "DO $proxy_leases_version_table$",
        "BEGIN",
        f"    IF to_regclass({_literal(VERSION_TABLE)}) IS NULL THEN",
        "        " + create_table.replace("\n", "\n        ").replace(", \n", ",\n") + ";",
        "    END IF;",
        "END",
        "$proxy_leases_version_table$;",
        insert,
        "",
        "COMMIT;",
        "",
        deploy_lock.RELEASE + ";",
        "",
        "SELECT string_agg(table_name || CASE WHEN created THEN ' (created)' ELSE ' (adopted)' END, ', '",
        f"                  ORDER BY table_name) AS proxy_leases_tables FROM public.proxy_leases_adopted_tables \\gset",
        f"\\echo 'proxy-leases {__version__}: installed {plan.head} in database' :DBNAME '({functions} functions and "
        f"procedures, {views} views); the fleet''s tables:' :proxy_leases_tables",
    ]
    if cron_mode == "off":
        lines.append("\\echo 'proxy-leases: pg_cron left alone (cron=off): run CALL public.run_lease_maintenance() every "
                     "minute from your own scheduler.'")
    else:
        lines.append("\\echo 'proxy-leases: NOT SCHEDULED: the pg_cron job is not scheduled, and nothing runs the "
                     "maintenance, until the script of `proxy-leases sql --cron` is run in pg_cron''s database (cron."
                     "database_name, usually postgres) as the role that owns the fleet''s tables.'")
    return "\n".join(lines) + "\n"


def cron_script(app_db: str, *, lock_timeout: str = DEFAULT_LOCK_TIMEOUT, head: str | None = None) -> str:
    """The head's pg_cron jobs for database `app_db`, to run in pg_cron's database.

    Call it inside an Alembic EnvironmentContext: pg_cron.py reads the -x options (cron_schedule,
    cron_history_retention) from there, as it does for an upgrade."""
    head = head or script_directory().get_current_head()
    given = pg_cron.option("cron_schedule", "PROXY_LEASES_CRON_SCHEDULE")
    retention = pg_cron.history_retention()
    job, history = pg_cron.job_name(app_db), pg_cron.history_job_name(app_db)
    variants = ([pg_cron.final_job_statements(app_db)] if given else
                [pg_cron.final_job_statements(app_db, pg_cron.default_schedule(version)) for version in ("1.5", "1.4")])
    schedule = (f"on schedule {given!r}" if given else
                "every 10 seconds where pg_cron is 1.5 or later, else every minute (as an upgrade picks it)")
    lines = [
        f"-- proxy-leases {__version__}: the pg_cron jobs of database {app_db}, as revision {head} schedules them",
        "--",
        f"-- Run it in the database named by cron.database_name (usually postgres; {app_db} itself only if pg_cron",
        f"-- lives there), as the role that owns {app_db}'s tables: a job runs as the role that scheduled it.",
        "--   psql -X -f cron.sql postgresql://owner@host:5432/postgres",
        "-- Each job replaces any earlier version of itself (a new jobid, active):",
        f"--   {job}: CALL public.run_lease_maintenance() in {app_db},",
        f"--   {schedule};",
        f"--   {history}: deletes the runs of {app_db}'s jobs older than {retention} from",
        f"--   cron.job_run_details, hourly at minute {pg_cron.HISTORY_SCHEDULE.split()[0]}, in this database.",
        "-- A role that is not a superuser needs, once, from a superuser in this database:",
        *(f"--   {grant.format(role='<role>')}" for grant in pg_cron.GRANTS_FOR_A_ROLE),
        "",
        "\\set ON_ERROR_STOP on",
        f"SET lock_timeout = {_literal(lock_timeout)};",
        "",
        "DO $proxy_leases_cron$",
        "BEGIN",
        "    IF to_regnamespace('cron') IS NULL THEN",
        "        RAISE EXCEPTION 'proxy-leases: pg_cron is not installed in database %', current_database()",
        "            USING HINT = 'Run this script in the database named by cron.database_name (usually postgres), '",
        "                         'where a superuser ran CREATE EXTENSION pg_cron.';",
        "    END IF;",
        "    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN",
        "        RAISE WARNING 'proxy-leases: the jobs will run as %, a superuser', current_user",
        "            USING HINT = 'Run this script as the role that owns the fleet''s tables: the jobs then have '",
        "                         'that role''s rights and no more.';",
        "    END IF;",
        "END",
        "$proxy_leases_cron$;",
        "",
    ]
    if len(variants) > 1:
        lines += ["SELECT coalesce((SELECT (regexp_match(extversion, '^([0-9]+)[.]([0-9]+)'))::int[] >= '{1,5}'",
                  "                   FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'), false) "
                  "AS proxy_leases_seconds \\gset"]
    lines += ["BEGIN;"]
    for i, statement in enumerate(variants[0]):
        if all(variant[i] == statement for variant in variants):
            lines.append(statement)
        else:
            lines += ["\\if :proxy_leases_seconds", variants[0][i], "\\else", variants[1][i], "\\endif"]
    lines += [
        "COMMIT;",
        "",
        f"SELECT jobid, jobname, schedule, database, username, active FROM cron.job",
        f" WHERE jobname IN ({_literal(job)}, {_literal(history)}) ORDER BY jobname DESC;",
        f"\\echo 'proxy-leases: scheduled {job} and {history} in database' :DBNAME 'as' :USER",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m proxy_leases.migrations.fresh_install: the plan, for a look
    built = build_plan()
    for number, group in enumerate(built.phase1, 1):
        print(number, group.revision, "tx" if group.transaction else "outside", group.files, file=sys.stdout)
    print("phase 2:", built.lock_file, built.definitions, built.phase2)
