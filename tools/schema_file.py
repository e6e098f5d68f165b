"""proxy_leases/sql/schema.sql: every object proxy-leases installs, as a fresh database at head has it, in
one file for reading.

It is pg_dump's --schema-only --no-owner output of a database where `alembic upgrade head` ran, tidied:
no header naming versions, no SET lines, no \\restrict keys, one comment line per object instead of
pg_dump's three, and the objects in sections (tables, constraints, indexes, functions, triggers, views,
rights), pg_dump's order within each. pg_dump's output differs between major versions: the file is
PostgreSQL 15's, the suite's main server.

    scripts/schema            write the file, from a throwaway PostgreSQL 15 (PG_BINDIR names another bin dir)
    scripts/schema --check    only compare: exit 1 and a short diff when the file is not what head makes

tests/behaviour/test_schema_file.py makes the same dump of the suite's migrated database and compares.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from proxy_leases.migrations.sql_files import SCHEMA_FILE, SQL_DIR

ROOT = Path(__file__).resolve().parent.parent

PATH = SQL_DIR / SCHEMA_FILE
SHOWN_PATH = PATH.relative_to(ROOT).as_posix()
# The server whose pg_dump wrote the committed file.
MAJOR_VERSION = 15
REGENERATE = "run scripts/schema to regenerate sql/schema.sql"

# pg_dump's entry types, by the section they are shown in, in the order of the sections. An entry of a
# type not listed stops the tidying (SchemaDumpError) rather than going missing.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Tables and sequences": ("TABLE", "SEQUENCE", "SEQUENCE OWNED BY", "DEFAULT"),
    "Constraints": ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT"),
    "Indexes": ("INDEX",),
    "Functions and procedures": ("FUNCTION", "PROCEDURE", "AGGREGATE"),
    "Triggers": ("TRIGGER",),
    "Views": ("VIEW",),
    "Rights": ("ACL", "DEFAULT ACL"),
}
# Entries that belong to the object before them: pg_dump prints an object's comments right after it.
ATTACHED = ("COMMENT",)
# Shown without the object line: the statements name their object.
UNNAMED = ("ACL", "DEFAULT ACL")

_ENTRY = re.compile(r"^--\n-- Name: (?P<name>.*?); Type: (?P<type>[^;]*); Schema: [^;]*; Owner: [^\n]*\n--\n", re.M)
_END = re.compile(r"^--\n-- PostgreSQL database dump complete\n--\n", re.M)
# What pg_dump prints between two entries to set up the next one (only after a blank line, at the end
# of the text it gives the entry before).
_SESSION_SETTING = re.compile(r"\n\n(?:SET [a-z_]+ = [^\n]*;\n*)+\Z")


class SchemaDumpError(RuntimeError):
    """pg_dump printed something the tidying does not know where to put."""


@dataclass
class Entry:
    type: str
    name: str
    text: str
    comments: list[str]


def pg_dump(url: str, bindir: str) -> str:
    """`pg_dump --schema-only --no-owner` of the database at `url`, by the pg_dump of `bindir` (the
    server's own version: an older pg_dump refuses a newer server, a newer one prints other text)."""
    done = subprocess.run([os.path.join(bindir, "pg_dump"), "--schema-only", "--no-owner", "--dbname", url],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SchemaDumpError(f"pg_dump failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def entries(dump: str) -> list[Entry]:
    """pg_dump's entries, each with its comments; the preamble (versions, SETs, \\restrict) and the
    closing lines (\\unrestrict) left out."""
    end = _END.search(dump)
    if end is None:
        raise SchemaDumpError("pg_dump's output does not end as a complete dump does")
    found: list[Entry] = []
    matches = list(_ENTRY.finditer(dump, 0, end.start()))
    for i, match in enumerate(matches):
        stop = matches[i + 1].start() if i + 1 < len(matches) else end.start()
        text = _SESSION_SETTING.sub("", dump[match.end():stop].rstrip("\n")).strip("\n")
        kind, name = match["type"], match["name"]
        if kind in ATTACHED:
            if not found:
                raise SchemaDumpError(f"a {kind} ({name}) before any object")
            found[-1].comments.append(text)
        elif any(kind in types for types in SECTIONS.values()):
            found.append(Entry(kind, name, text, []))
        else:
            raise SchemaDumpError(f"pg_dump printed a {kind} ({name}): give that type a section in tools/schema_file.py")
    return found


def _banner(title: str) -> list[str]:
    rule = "-- " + "-" * 105
    return [rule, f"-- {title}", rule, ""]


def _canonical_rights(text: str) -> str:
    """An object's REVOKEs and GRANTs, REVOKEs first, each kind by its text: pg_dump prints them in the
    order the rights were given, which says nothing to a reader and changes when a revision regrants."""
    lines = text.splitlines()
    if not all(line.startswith(("REVOKE ", "GRANT ")) and line.endswith(";") for line in lines):
        raise SchemaDumpError(f"rights printed on more than one line each: {text!r}")
    return "\n".join(sorted(lines, key=lambda line: (line.startswith("GRANT "), line)))


def _object_line(entry: Entry) -> str:
    # pg_dump names a constraint or a trigger "<table> <name>"; said the way SQL says it.
    if entry.type in ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "TRIGGER") and " " in entry.name:
        table, name = entry.name.split(" ", 1)
        return f"-- {entry.type} {name} ON {table}"
    return f"-- {entry.type} {entry.name}"


def tidy(dump: str, head: str, major: int) -> str:
    """The schema file's text from pg_dump's output of a database at revision `head`."""
    by_section: dict[str, list[Entry]] = {title: [] for title in SECTIONS}
    for entry in entries(dump):
        by_section[next(title for title, types in SECTIONS.items() if entry.type in types)].append(entry)
    lines = [
        f"-- proxy-leases at head ({head}): every object it installs, as a fresh database at head has it.",
        "--",
        "-- Generated, do not edit: run scripts/schema to regenerate it (tools/schema_file.py);",
        "-- tests/behaviour/test_schema_file.py fails when it differs from what upgrade head makes. It is pg_dump",
        f"-- --schema-only --no-owner of PostgreSQL {major}, of a database where `alembic upgrade head` ran",
        "-- (cron=off), tidied. For reading, not for installing: it records no revision, makes none of an",
        "-- upgrade's checks, and its order is a reader's. `proxy-leases upgrade` installs; `proxy-leases sql`",
        "-- prints an install script.",
        "--",
        "-- The fleet's tables (proxies, catalog_tasks, object_tasks) are shown whole, with what proxy-leases",
        "-- adds to them. Not here: the roles proxy_leases_worker and proxy_leases_operator, which belong to",
        "-- the cluster (revision 0014_least_privilege makes them), and the pg_cron jobs, kept in pg_cron's",
        "-- database.",
        "--",
        "-- Sections: " + ", ".join(title.lower() for title in SECTIONS) + ".",
        "-- Within each, pg_dump's order (by name, unless a dependency moves an object up); each object's",
        "-- comments follow it, and its rights are in the last section (REVOKEs first, then GRANTs by role).",
    ]
    for title, section in by_section.items():
        if not section:
            continue
        lines += ["", "", *_banner(title)]
        for number, entry in enumerate(section):
            if number:
                lines.append("")
            if entry.type not in UNNAMED:
                lines.append(_object_line(entry))
            lines.append(_canonical_rights(entry.text) if entry.type in UNNAMED else entry.text)
            if entry.comments:
                lines += ["", *entry.comments]
    return "\n".join(lines).rstrip("\n") + "\n"


def dumped_and_tidied(url: str, bindir: str) -> tuple[str, str]:
    """(pg_dump's output, the schema file's text) for the database at `url`, dumped by `bindir`'s pg_dump."""
    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT version_num FROM proxy_leases_alembic_version").fetchone()[0]
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    dump = pg_dump(url, bindir)
    return dump, tidy(dump, head, major)


def schema_of(url: str, bindir: str) -> str:
    """The schema file's text for the database at `url` (at head)."""
    return dumped_and_tidied(url, bindir)[1]


def difference(committed: str, made: str, limit: int = 40) -> str:
    """A unified diff of the committed file and what was made, cut to `limit` lines."""
    diff = list(difflib.unified_diff(committed.splitlines(), made.splitlines(), f"{SHOWN_PATH} (committed)",
                                     f"{SHOWN_PATH} (from upgrade head)", lineterm="", n=2))
    if len(diff) > limit:
        diff = diff[:limit] + [f"... ({len(diff) - limit} more lines of diff)"]
    return "\n".join(diff)


def made_at_head() -> str:
    """The schema file's text from a fresh database upgraded to head on a throwaway PostgreSQL 15."""
    from tools.harness import ThrowawayPostgres, migrated_database

    # PG_BINDIR when set; else Debian's PostgreSQL 15 when installed beside newer ones; else the newest.
    debian = f"/usr/lib/postgresql/{MAJOR_VERSION}/bin"
    bindir = "" if os.environ.get("PG_BINDIR") or not os.path.isfile(os.path.join(debian, "pg_ctl")) else debian
    pg = ThrowawayPostgres(preload_pg_cron=False, bindir=bindir)
    if pg.major_version != MAJOR_VERSION:
        raise SystemExit(f"scripts/schema: {SHOWN_PATH} is PostgreSQL {MAJOR_VERSION}'s pg_dump output; the server "
                         f"in {pg.bindir} is {pg.version_text}: set PG_BINDIR to a PostgreSQL {MAJOR_VERSION} bin "
                         "directory")
    with pg:
        database = migrated_database(pg, "fleet", cron="off")
        return schema_of(database.url, pg.bindir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help=f"compare {SHOWN_PATH} with what upgrade head makes, and change nothing")
    args = parser.parse_args(argv)
    made = made_at_head()
    committed = PATH.read_text() if PATH.exists() else ""
    if args.check:
        if committed == made:
            print(f"scripts/schema: {SHOWN_PATH} is what upgrade head makes")
            return 0
        print(difference(committed, made), file=sys.stderr)
        print(f"scripts/schema: {SHOWN_PATH} differs from what upgrade head makes: {REGENERATE}", file=sys.stderr)
        return 1
    if committed == made:
        print(f"scripts/schema: {SHOWN_PATH} unchanged ({len(made.splitlines())} lines)")
    else:
        PATH.write_text(made)
        print(f"scripts/schema: wrote {SHOWN_PATH} ({len(made.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
