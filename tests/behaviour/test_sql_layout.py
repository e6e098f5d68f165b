"""proxy_leases/sql/ as sql/README.md describes it: the installed definitions in functions/, procedures/ and
views/, each revision's steps in revisions/, what the head no longer installs in history/; each file
found by its logical name in exactly one place, and every pin holding."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

from proxy_leases.migrations import fresh_install, sql_files
from proxy_leases.migrations.fresh_install import VERSIONED, definitions_in

DEFINITION_FOLDERS = ("functions", "procedures", "views")
# A dollar-quoted string, or what hides one from a reader of SQL: a comment, a quoted literal.
_SKIPPED_OR_BODY = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|(\$(?:[A-Za-z_]\w*)?\$)(.*?)\1", re.S)


def function_body(text: str) -> str:
    """The first dollar-quoted string of a file outside its comments: a definition file's body, as
    pg_proc.prosrc keeps it."""
    for match in _SKIPPED_OR_BODY.finditer(text):
        if match.group(1):
            return match.group(2)
    raise AssertionError("no dollar-quoted body")


def folder_of(path) -> str:
    """'' for the definitions installed at head (sql/functions/...), else revisions or history."""
    first = path.relative_to(sql_files.SQL_DIR).parts[0]
    return first if first in (sql_files.REVISIONS, sql_files.HISTORY) else ""


def versioned_names() -> dict[str, tuple[str, int]]:
    """Each pinned definition file's logical name: (its object, e.g. functions/block_proxy.without_token, version)."""
    found = {}
    for name in sql_files.pinned_checksums():
        match = VERSIONED.fullmatch(name)
        if match:
            found[name] = (f"{match['kind']}/{match['object']}", int(match["version"]))
    return found


def newest_versions() -> set[str]:
    newest: dict[str, tuple[int, str]] = {}
    for name, (key, version) in versioned_names().items():
        newest[key] = max(newest.get(key, (0, "")), (version, name))
    return {name for _, name in newest.values()}


def test_every_pinned_name_is_one_file_and_every_file_is_pinned_and_unchanged():
    """Applied revisions never change: a file a revision runs is frozen by sql/SHA256SUMS, under the
    logical name the revisions give it, wherever it sits."""
    pins = sql_files.pinned_checksums()
    held = {name: sql_files.candidates(name) for name in pins}
    assert {name: paths for name, paths in held.items() if len(paths) != 1} == {}
    by_name = defaultdict(list)
    for path in sql_files.frozen_files():
        by_name[sql_files.logical_name(path)].append(path)
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
    assert sorted(by_name) == sorted(pins), "every file a revision may run is pinned, and every pin has its file"
    changed = [name for name, digest in pins.items()
               if hashlib.sha256(sql_files.sql_path(name).read_bytes()).hexdigest() != digest]
    assert changed == []


def test_each_folder_holds_its_kind_of_file():
    sql_dir = sql_files.SQL_DIR
    assert {path.name for path in sql_dir.iterdir()} == {
        "README.md", "SHA256SUMS", sql_files.SCHEMA_FILE, *DEFINITION_FOLDERS, sql_files.REVISIONS, sql_files.HISTORY}
    assert {path.name for path in (sql_dir / sql_files.HISTORY).iterdir() if path.is_file()} == {"README.md"}
    misplaced = []
    for path in sql_files.frozen_files():
        name = sql_files.logical_name(path)
        versioned = VERSIONED.fullmatch(name) is not None
        if versioned == (folder_of(path) == sql_files.REVISIONS):
            misplaced.append(path.relative_to(sql_dir).as_posix())
    assert misplaced == [], ("revisions/ holds each revision's steps (<revision>_<what>.sql); a definition "
                             "(functions/, procedures/, views/: <name>.v<N>.sql) is current or history")


def test_the_definition_folders_hold_what_head_installs_and_history_the_rest(db):
    """A definition file is current when it is the newest version of its object and the head has that
    object, as the file defines it: each function's body is pg_proc.prosrc of a function of that name,
    each view is there. Everything else (an older version, an object dropped since) is history."""
    installed_bodies = defaultdict(set)
    for name, body in db.all("SELECT proname, prosrc FROM pg_catalog.pg_proc "
                             "WHERE pronamespace = 'public'::regnamespace"):
        installed_bodies[name].add(body)
    views = {name for (name,) in db.all("SELECT relname FROM pg_catalog.pg_class "
                                        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'v'")}
    newest = newest_versions()
    wrong = []
    for name in versioned_names():
        path = sql_files.sql_path(name)
        text = path.read_text()
        defined = definitions_in(text)
        at_head = bool(defined) and all(
            object_name in views if kind == "view" else function_body(text) in installed_bodies[object_name]
            for kind, object_name, _ in defined)
        current = name in newest and at_head
        where = path.relative_to(sql_files.SQL_DIR).as_posix()
        if current and folder_of(path) != "":
            wrong.append(f"{where}: installed at head, the newest version: belongs in sql/{name}")
        elif not current and folder_of(path) != sql_files.HISTORY:
            why = "the head has it otherwise, or not at all" if name in newest else "a newer version exists"
            wrong.append(f"{where}: {why}: git mv it to sql/{sql_files.HISTORY}/{name}")
    assert wrong == []


def test_the_definition_folders_are_what_the_fresh_install_script_creates():
    """The other way to say "installed at head": what `proxy-leases sql` creates, each object once."""
    plan = fresh_install.build_plan()
    created = set(plan.definitions) | {name for name in plan.phase2 if VERSIONED.fullmatch(name)}
    current = {sql_files.logical_name(path) for path in sql_files.frozen_files() if folder_of(path) == ""}
    assert current == created
