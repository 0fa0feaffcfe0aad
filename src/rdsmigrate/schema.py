"""Schema transfer with the real tools: ``pg_dump --schema-only`` once, restored in two halves.

The pre-data half (types, tables, functions, views) goes in before the rows; the post-data half
(indexes, constraints, foreign keys, triggers) after them, both read once from ``pg_restore --file
-`` and run through the tool's own sessions, several at once.
Loading into tables without indexes, foreign keys or triggers is what makes the copy fast and
keeps triggers from firing and constraints from being checked row by row.

What ``pg_dump`` without ``--create`` drops is carried over here too: the database-level settings
(``ALTER DATABASE .. SET``) and the database comment. Roles are cluster-level and only copied with
``--roles`` (without passwords); otherwise ownership and grants are left to the target user,
because restoring them would fail on every role the target does not have.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.copy.snapshot import SLOT_PREFIX
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.db.selection import Resolved
from rdsmigrate.db.tools import ClientTools, server_major
from rdsmigrate.errors import UserError

# GUCs whose value is a list of names: each element must be quoted on its own, as pg_dump does.
_LIST_GUCS = {"search_path", "temp_tablespaces", "local_preload_libraries",
              "session_preload_libraries", "shared_preload_libraries"}

# Errors that only mean "this object exists already": expected when post-data is re-run by
# --resume after a crash in the middle of it.
_ALREADY_EXISTS = re.compile(r"already exists|multiple primary keys", re.IGNORECASE)


@dataclass(frozen=True)
class SchemaArchive:
    """A schema-only custom-format dump of the source, as of the copy's snapshot."""

    path: Path
    tools: ClientTools

    def toc(self) -> list[str]:
        out = subprocess.run([self.tools.path("pg_restore"), "-l", str(self.path)],
                             capture_output=True, text=True, check=True).stdout
        return out.splitlines()


def dump(tools: ClientTools, source: Endpoint, snapshot: str | None, selection: Resolved,
         path: Path) -> SchemaArchive:
    """``pg_dump --schema-only`` as of ``snapshot`` into ``path``, so schema and rows describe
    one instant."""
    # Subscriptions point at other servers: recreated on the target they would start pulling
    # from wherever the source pulls from. Never carried.
    args = ["--schema-only", "--format=custom", "--file", str(path), "--no-sync",
            "--no-subscriptions"]
    if snapshot:
        args += ["--snapshot", snapshot]
    args += selection.pg_dump_args()
    tools.run("pg_dump", args, source, what="dumping the schema")
    return SchemaArchive(path, tools)


# Publications this tool creates on the source for an online migration belong to the source only.
# By name where no source connection is at hand; the post-data restore, which restores them,
# skips them by oid (own_publication_entries), as a name with a space defeats this pattern.
_OWN_PUBLICATION = re.compile(r" PUBLICATION( TABLE| TABLES IN SCHEMA)? \S+ rdsmigrate_")
# A TOC line starts "<dump id>; <catalog oid> <object oid> ": the one part of it that no name
# (schema, table, owner: any of them may hold spaces) can make ambiguous.
_TOC_OIDS = re.compile(r"^\d+; (\d+) (\d+) ")


def toc_oids(line: str) -> tuple[int, int] | None:
    """(catalog oid, object oid) of a TOC line: the entry's identity in the source's catalogs."""
    match = _TOC_OIDS.match(line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def own_publication_entries(conn: psycopg.Connection[Any]) -> frozenset[tuple[int, int]]:
    """The TOC identities of the publications this tool creates on the source for an online
    migration, and of their tables: they belong to the source only.

    Matched by oid, never by the TOC text: ``PUBLICATION TABLE my schema rdsmigrate_x t`` cannot
    be split into schema, publication and table when a name holds a space.
    """
    like = SLOT_PREFIX.replace("_", "\\_") + "%"
    rows = conn.execute(
        """SELECT 'pg_catalog.pg_publication'::regclass::oid::int8, p.oid::int8
             FROM pg_catalog.pg_publication p WHERE p.pubname LIKE %(like)s
           UNION ALL
           SELECT 'pg_catalog.pg_publication_rel'::regclass::oid::int8, r.oid::int8
             FROM pg_catalog.pg_publication_rel r
             JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid WHERE p.pubname LIKE %(like)s""",
        {"like": like}).fetchall()
    if server_major(conn.info.server_version) >= 15:  # FOR TABLES IN SCHEMA
        rows += conn.execute(
            """SELECT 'pg_catalog.pg_publication_namespace'::regclass::oid::int8, s.oid::int8
                 FROM pg_catalog.pg_publication_namespace s
                 JOIN pg_catalog.pg_publication p ON p.oid = s.pnpubid
                WHERE p.pubname LIKE %(like)s""", {"like": like}).fetchall()
    return frozenset((int(c), int(o)) for c, o in rows)


def _restorable(archive: SchemaArchive, *, roles: bool,
                skip: frozenset[tuple[int, int]] = frozenset()) -> list[str]:
    """The archive's TOC lines without entries that cannot or should not be restored, nor the
    entries identified in ``skip``.

    The ``public`` schema and ``plpgsql``'s comment exist on every target and belong to the
    bootstrap superuser (on RDS, ``rdsadmin``): recreating or commenting them fails for anyone
    else, and they carry nothing of the source's.
    """
    keep = []
    for line in archive.toc():
        if skip and toc_oids(line) in skip:
            continue
        if line.startswith(";") or not line.strip():
            continue
        if re.search(r" SCHEMA - public ", line) or re.search(r" COMMENT - SCHEMA public ", line):
            continue
        if " COMMENT - EXTENSION plpgsql" in line or " EXTENSION - plpgsql " in line:
            continue
        if not roles and re.search(r"\d+ \d+ \d+ (ACL|DEFAULT ACL) ", line):
            continue
        if _OWN_PUBLICATION.search(line):
            continue
        keep.append(line)
    return keep


def restorable_objects(archive: SchemaArchive, *, roles: bool) -> list[tuple[int, int]]:
    """The (catalog, oid) on the source of every restorable entry that has one, in archive
    (dependency) order."""
    found = []
    for line in _restorable(archive, roles=roles):
        entry = toc_oids(line)
        if entry and entry[0] != 0 and entry[1] != 0:
            found.append(entry)
    return found


# pg_restore 17 and later begins every session with this, and a server before 17 refuses it.
_TRANSACTION_TIMEOUT = re.compile(r"^SET transaction_timeout = 0;$", re.MULTILINE)
_ERROR = re.compile(r"(?:error|ERROR):\s*(.*)")


def restore_lines(archive: SchemaArchive, target: Endpoint, lines: list[str], workdir: Path,
                  name: str, *, section: str, jobs: int = 1, roles: bool = False,
                  tolerate_existing: bool = False, settings: dict[str, str] | None = None,
                  atomic: bool = False, target_major: int | None = None) -> None:
    """``pg_restore`` of exactly ``lines`` (TOC entries) of ``section`` into the target, with
    ``settings`` for its sessions; ``atomic``: in one transaction, stopping at the first error,
    so that a failure leaves nothing behind.

    A target older than 17 restored with pg_restore 17 or later (the only client new enough for
    the source may be newer than the target: 16 to 16 with clients 15 and 18, or the runner
    image's 18 alone) refuses the ``SET transaction_timeout = 0`` pg_restore starts each session
    with, and in one transaction that first error fails everything: the script is then written
    by ``pg_restore --file -`` without that line and run by that installation's ``psql``."""
    if not lines:
        return
    listing = workdir / f"{name}.list"
    listing.write_text("\n".join(lines) + "\n")
    args = [f"--section={section}", "--use-list", str(listing)]
    if not roles:
        args += ["--no-owner", "--no-privileges"]
    env = target.client_env()
    if settings:
        env["PGOPTIONS"] = " ".join([env.get("PGOPTIONS", ""),
                                     *(f"-c {k}={v}" for k, v in settings.items())]).strip()
    if target_major is not None and target_major < 17 <= archive.tools.major:
        script = subprocess.run(
            [archive.tools.path("pg_restore"), "--file", "-", *args, str(archive.path)],
            capture_output=True, text=True, check=True).stdout
        proc = subprocess.run(
            [archive.tools.path("psql"), "-X", "-q", "--no-psqlrc", "--set", "VERBOSITY=terse",
             *(["--set", "ON_ERROR_STOP=1", "--single-transaction"] if atomic else []),
             "--dbname", target.without_password()],
            input=_TRANSACTION_TIMEOUT.sub("", script), env=env, capture_output=True, text=True,
            check=False)
    else:
        if jobs > 1:
            args += ["--jobs", str(jobs)]
        if atomic:
            args.append("--single-transaction")
        proc = subprocess.run(
            [archive.tools.path("pg_restore"), "--dbname", target.without_password(), *args,
             str(archive.path)],
            env=env, capture_output=True, text=True, check=False,
        )
    errors = [m.group(1) for line in proc.stderr.splitlines()
              if "errors ignored on restore" not in line and (m := _ERROR.search(line))]
    if proc.returncode != 0 and not errors:
        errors = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or [
            f"exit code {proc.returncode}"]
    if tolerate_existing:
        errors = [line for line in errors if not _ALREADY_EXISTS.search(line)]
    if errors:
        detail = target.redact(" | ".join(e.strip() for e in errors[:3]))
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        rerun = ("nothing was restored (one transaction), so rerun the same command" if atomic
                 else "rerun with --resume" if section != "pre-data" else
                 "rerun with --replace (this schema was too big for one transaction: the part "
                 "restored stays)")
        raise UserError(
            f"restoring the {section} schema on target {target.describe()} failed: {detail}{more}. "
            "Fix the cause (a missing role or extension is the usual one: see rdsmigrate "
            f"preflight), then {rerun}"
        )


# Pre-data entries that create a relation: each holds a lock until its transaction ends.
_CREATES_RELATION = re.compile(
    r"^\d+; \d+ \d+ (TABLE|SEQUENCE|VIEW|MATERIALIZED VIEW|FOREIGN TABLE|TYPE) ")
# Locks one created relation holds, with margin (measured: a 15 target with the default lock
# table, 6,400 slots, ran out at table 5,522 of 10,000 small tables with a TOAST table each).
LOCKS_PER_RELATION = 2


def fits_one_transaction(archive: SchemaArchive, target_conn: psycopg.Connection[Any], *,
                         roles: bool) -> bool:
    """Whether the target's lock table can hold a lock on every relation the pre-data creates
    (one transaction of 10,000 tables needs ``max_locks_per_transaction`` raised)."""
    lines = _restorable(archive, roles=roles)
    row = target_conn.execute(
        "SELECT current_setting('max_locks_per_transaction')::int8 * "
        "(current_setting('max_connections')::int8 "
        "+ current_setting('max_prepared_transactions')::int8)").fetchone()
    capacity = int(row[0]) if row else 0
    return sum(1 for line in lines if _CREATES_RELATION.match(line)) * LOCKS_PER_RELATION <= capacity


def restore_pre_data(archive: SchemaArchive, target: Endpoint, workdir: Path, *, roles: bool,
                     target_conn: psycopg.Connection[Any], atomic: bool) -> bool:
    """Restore pre-data with ``pg_restore``: if ``atomic``, in one transaction, so that a failure
    leaves nothing behind, else (the caller found the lock table too small, see
    :func:`fits_one_transaction`) in pieces; returns whether it was one. The usual way is
    :func:`rdsmigrate.copy.predata.restore`, in several sessions.

    ``target_conn`` only reads the server's version.
    """
    lines = _restorable(archive, roles=roles)
    major = target_conn.info.server_version // 10000
    if atomic:
        try:
            restore_lines(archive, target, lines, workdir, "pre-data", section="pre-data",
                          roles=roles, atomic=True, target_major=major)
            return True
        except UserError as exc:
            # Rolled back whole; other sessions' locks left too few: go on in pieces.
            if "out of shared memory" not in str(exc):
                raise
    restore_lines(archive, target, lines, workdir, "pre-data", section="pre-data", roles=roles,
                  target_major=major)
    return False


# One entry of `pg_restore --verbose --file -`: its header block, then its SQL up to the next one.
_ENTRY_HEADER = re.compile(
    r"^--\n-- TOC entry (\d+) \(class (\d+) OID (\d+)\)\n(?:-- Dependencies:([ \d]*)\n)?"
    r"-- Name: (.*?); Type: (.*?); Schema: (.*?); Owner: (.*?)(?:; Tablespace: (.*))?\n"
    r"(?:-- Data Pos: \d+\n)?--\n", re.MULTILINE)
# What pg_restore writes between entries for the next one (which sets its own, see run_entry).
_BETWEEN = re.compile(r"^(SET default_tablespace = .*|SET default_table_access_method = .*|"
                      r"--\n-- PostgreSQL database dump complete\n--|\\(?:un)?restrict .*)$",
                      re.MULTILINE)
# pg_restore sets the access method before a table's entry only when it changes: it holds for
# every entry after it until the next one.
_ACCESS_METHOD = re.compile(r"^SET default_table_access_method = (.*);$", re.MULTILINE)
_SCRIPT_ENCODING = re.compile(r"^SET client_encoding = '([^']*)';$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Entry:
    """One TOC entry and the SQL pg_restore would run for it.

    ``catalog`` is the object's (class, oid) on the source, which is how it is identified: names
    in the TOC's text are ambiguous (spaces, quotes), a catalog address is not. ``table`` is the
    relation the entry belongs to (``schema.name``), ``locks`` the partition roots of the
    relations it locks (its own and, for a foreign key, the referenced one), ``address`` the
    source's ``pg_identify_object_as_address`` of it, by which the target's copy is found.
    ``access_method`` is the table access method pg_restore would have in effect for it (pre-data
    tables and materialized views; empty where none was set).
    """

    dump_id: int
    desc: str
    tag: str
    catalog: tuple[int, int]
    deps: tuple[int, ...]
    tablespace: str
    sql: str
    table: str | None = None
    table_kind: str | None = None
    locks: tuple[int, ...] = ()
    address: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None
    access_method: str = ""

    def describe(self) -> str:
        return f"{self.desc} {self.tag}"


Annotation = tuple[tuple[str, tuple[str, ...], tuple[str, ...]] | None, str | None, str | None,
                   tuple[int, ...]]
"""What the source's catalogs add to a post-data entry: address, table, table kind, locks."""


def script_entries(archive: SchemaArchive, *, section: str, roles: bool,
                   skip: frozenset[tuple[int, int]] = frozenset(),
                   annotate: Callable[[list[tuple[int, int]]],
                                      dict[tuple[int, int], Annotation]] | None = None,
                   ) -> list[Entry] | None:
    """The restorable entries of ``section`` in the archive's (dependency) order, with their SQL,
    obtained from one ``pg_restore --file -``: no process per entry or per table. ``annotate``
    is given every entry's (class, oid) and returns what to add to the entry of each: every
    entry is made once, whole (30,000 of them made twice left 4 MiB of holes in the command's
    memory).

    None if the archive's text is neither UTF-8 nor plain ASCII (a source database in another
    encoding with names or text outside ASCII): its SQL is then only safe to send through
    pg_restore itself, which declares that encoding to the server. The sessions here declare
    UTF8, and ASCII is the same in every server encoding.
    """
    args = [archive.tools.path("pg_restore"), "--verbose", f"--section={section}", "--file", "-"]
    if not roles:
        args += ["--no-owner", "--no-privileges"]
    raw = subprocess.run([*args, str(archive.path)], capture_output=True, check=True).stdout
    declared = _SCRIPT_ENCODING.search(raw[:4096].decode("ascii", "replace"))
    if not ((declared and declared.group(1).upper() in ("UTF8", "UTF-8")) or raw.isascii()):
        return None
    script = raw.decode()
    del raw
    wanted = {int(line.split(";", 1)[0]) for line in _restorable(archive, roles=roles, skip=skip)}
    headers = list(_ENTRY_HEADER.finditer(script))
    extra = annotate([(int(h.group(2)), int(h.group(3))) for h in headers
                      if int(h.group(1)) in wanted]) if annotate else {}
    entries = []
    ends = [h.start() for h in headers[1:]] + [len(script)] if headers else []
    access_method, after_previous = "", 0
    for header, end in zip(headers, ends, strict=True):
        # The SET for an entry stands between the previous entry's SQL and its own header.
        for found in _ACCESS_METHOD.finditer(script, after_previous, header.start()):
            access_method = found.group(1)
        after_previous = header.end()
        dump_id = int(header.group(1))
        if dump_id not in wanted:
            continue
        catalog = (int(header.group(2)), int(header.group(3)))
        address, table, table_kind, locks = extra.get(catalog, (None, None, None, ()))
        entries.append(Entry(
            dump_id=dump_id, desc=sys.intern(header.group(6)), tag=header.group(5),
            catalog=catalog, deps=tuple(int(d) for d in (header.group(4) or "").split()),
            tablespace=header.group(9) or "", sql=_BETWEEN.sub("", script[header.end():end]).strip(),
            access_method=sys.intern(access_method), address=address, table=table,
            table_kind=table_kind, locks=locks,
        ))
    return entries


def _post_data_entries(archive: SchemaArchive, *, roles: bool,
                       skip: frozenset[tuple[int, int]],
                       annotate: Callable[[list[tuple[int, int]]],
                                          dict[tuple[int, int], Annotation]]) -> list[Entry]:
    entries = script_entries(archive, section="post-data", roles=roles, skip=skip,
                             annotate=annotate)
    if entries is None:
        raise UserError(
            "the source database's encoding is not UTF8 and its indexes, constraints or "
            "triggers use characters outside ASCII: this version builds them only from a UTF-8 "
            "(or ASCII) schema dump. Copy with pg_dump | pg_restore, or convert the source "
            "database to UTF8 first")
    return entries


# The settings pg_restore gives its sessions: every name in the entries' SQL is qualified, and an
# index expression's functions must resolve as they did for pg_dump.
_SESSION = ("SET statement_timeout = 0; SET lock_timeout = 0; "
            "SET idle_in_transaction_session_timeout = 0; SET client_encoding = 'UTF8'; "
            "SET standard_conforming_strings = on; "
            "SELECT pg_catalog.set_config('search_path', '', false); "
            "SET check_function_bodies = false; SET xmloption = content; "
            "SET client_min_messages = warning; SET row_security = off")


# Deferred flushes need a way to force one at the end (flush_commits), which takes a temporary
# table: a session without the TEMPORARY privilege on the database keeps flushing every commit.
_CAN_DEFER_FLUSH = "pg_catalog.has_database_privilege(current_database(), 'TEMPORARY')"
_DEFER_FLUSH = ("SELECT pg_catalog.set_config('synchronous_commit', 'off', false) "
                f"WHERE {_CAN_DEFER_FLUSH}")


def prepare_session(conn: psycopg.Connection[Any], *, defer_flush: bool = True) -> None:
    """Make ``conn`` a session that runs entries the way ``pg_restore`` would, except that its
    commits do not wait for the WAL flush (unless not ``defer_flush``).

    A durable server flushes WAL at every commit, and post-data is thousands of small
    transactions (three per table of the many-tables benchmark). Nothing is less safe for it: an
    entry lost with its commit in a crash of the target server is found missing on ``--resume``
    by its catalog identity (never by the copy's record) and built again, and
    :func:`flush_commits` makes all of them durable before the copy records post-data as done.
    """
    conn.execute(_SESSION.encode())
    if defer_flush:
        conn.execute(_DEFER_FLUSH.encode())


def flush_commits(conn: psycopg.Connection[Any]) -> None:
    """Wait until every transaction committed on the target so far is durable.

    A commit with ``synchronous_commit = on`` flushes the WAL up to its own commit record, and
    so past every commit before it (the sessions of :func:`prepare_session` included), but only
    if the transaction wrote WAL of its own: an xid alone does not make the server wait. Creating
    a temporary table writes catalog rows, which any user with TEMPORARY may; without it the
    sessions never deferred a flush.
    """
    row = conn.execute(f"SELECT {_CAN_DEFER_FLUSH}".encode()).fetchone()
    if not (row and row[0]):
        return
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("CREATE TEMPORARY TABLE rdsmigrate_flush () ON COMMIT DROP")


def entries_script(conn: psycopg.Connection[Any], entries: Seq[Entry]) -> list[bytes]:
    """The statements that run ``entries`` as pg_restore would: each in its tablespace and, when
    it says one, table access method (both local to the transaction)."""
    script: list[bytes] = []
    for entry in entries:
        script.append(_set_local(conn, "default_tablespace", entry.tablespace))
        if entry.access_method:
            script.append(_set_local(conn, "default_table_access_method", entry.access_method))
        script.append(entry.sql.encode())
    return script


_SET_LOCAL: dict[tuple[str, str, str], bytes] = {}


def _set_local(conn: psycopg.Connection[Any], name: str, value: str) -> bytes:
    """``set_config(name, value, true)`` as bytes for ``conn``, composed once per value: composing
    it for each of 40,000 entries was a second of the command's CPU, which its index-building
    threads wait for."""
    key = (name, value, conn.info.encoding)
    found = _SET_LOCAL.get(key)
    if found is None:
        found = _SET_LOCAL[key] = sql.SQL("SELECT pg_catalog.set_config({}, {}, true)").format(
            sql.Literal(name), sql.Literal(value)).as_bytes(conn)
    return found


def run_entries(conn: psycopg.Connection[Any], entries: Seq[Entry],
                settings: dict[str, str] | None = None, statements: Seq[str] = ()) -> None:
    """Run ``entries``, then ``statements``, in one transaction on a session made by
    :func:`prepare_session`, sent as one script.

    One round trip a transaction, not one a statement (settings, each entry's tablespace,
    BEGIN and COMMIT): post-data of small tables is thousands of statements that take about a
    millisecond each on the server. At the first error the server skips the rest of the script;
    the transaction it leaves open is rolled back here, so nothing of it stays.
    """
    script: list[bytes] = [b"BEGIN"]
    for name, value in (settings or {}).items():
        script.append(sql.SQL("SELECT pg_catalog.set_config({}, {}, true)").format(
            sql.Literal(name), sql.Literal(value)).as_bytes(conn))
    script += entries_script(conn, entries)
    script += [statement.encode() for statement in statements]
    script.append(b"COMMIT")
    try:
        # Each statement ends on a line of its own: a body ending in a comment cannot swallow it.
        conn.execute(b"\n;\n".join(script))
    except BaseException:
        if not conn.closed and conn.info.transaction_status in (
                psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
            with contextlib.suppress(psycopg.Error):
                conn.execute(b"ROLLBACK")
        raise


def exists_on_target(conn: psycopg.Connection[Any], entry: Entry) -> bool:
    """Whether the target already has what ``entry`` creates, found by its catalog identity.

    What a resumed copy meets from an interrupted run: each entry ran in its own transaction,
    so an object that exists is complete. Only entries that create their object are skipped:
    one that alters an existing object (a partition's cloned trigger disabled, row security
    enabled) carries that object's address too, and comments, security labels and grants are
    idempotent, so those always run again.
    """
    if not _CREATES.match(entry.sql):
        return False
    if entry.desc == "INDEX ATTACH":
        match = _ATTACH.match(entry.sql)
        if match is None:
            return False
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s)"
            " AND inhparent = to_regclass(%s))", [match.group(2), match.group(1)]).fetchone()
        return bool(row and row[0])
    if entry.address is None:
        return False
    kind, names, args = entry.address
    try:
        with conn.transaction():
            conn.execute("SELECT pg_get_object_address(%s, %s, %s)", [kind, list(names), list(args)])
    except psycopg.Error:
        return False
    return True


# How pg_dump writes an entry that creates its object (constraints: "ALTER TABLE ONLY t\n    ADD").
_CREATES = re.compile(r"^(?:CREATE |ALTER TABLE (?:ONLY )?[^\n]+\n\s+ADD CONSTRAINT |"
                      r"ALTER PUBLICATION [^\n]+ ADD |ALTER INDEX [^\n]+ ATTACH PARTITION )")
_ATTACH = re.compile(r"^ALTER INDEX (.+) ATTACH PARTITION (.+);$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class KeyBuild:
    """A primary key or unique constraint built in two steps instead of one ``ALTER TABLE``.

    ``ALTER TABLE .. ADD PRIMARY KEY`` holds an ACCESS EXCLUSIVE lock for the whole index build,
    so no other index of the table can build beside it (measured at scale 40: payments' primary
    key, unique and plain index ran one after another, 1.3 s). ``CREATE UNIQUE INDEX`` takes a
    lock that does not conflict with itself; ``ADD CONSTRAINT .. USING INDEX`` then only
    attaches the finished index. The index is built under a temporary name, so a run interrupted
    between the steps leaves an index that :attr:`drop` removes, never one that hides the
    constraint's absence.

    Only the facts are kept; the statements are written when asked for: one of these exists for
    every primary key of the source (10,000 tables: 6 MiB of statements held for the few tables
    big enough to be built in two steps).
    """

    nsp: str
    rel: str
    con: str
    con_oid: int
    primary: bool
    deferrable: bool
    deferred: bool
    clustered: bool
    replident: bool
    tail: str
    """pg_get_indexdef() after the index and table names: "USING btree (id) WITH (...)"."""

    @property
    def table(self) -> str:
        return f"{self.nsp}.{self.rel}"

    @property
    def _temp(self) -> str:
        return f"rdsmigrate_key_{self.con_oid}"

    @property
    def create(self) -> str:
        return sql.SQL("CREATE UNIQUE INDEX {} ON ONLY {} {}").format(
            sql.Identifier(self._temp), sql.Identifier(self.nsp, self.rel),
            sql.SQL(self.tail)).as_string()

    @property
    def attach(self) -> list[str]:
        table, con = sql.Identifier(self.nsp, self.rel), sql.Identifier(self.con)
        kind = sql.SQL("PRIMARY KEY" if self.primary else "UNIQUE")
        when = sql.SQL((" DEFERRABLE" if self.deferrable else "")
                       + (" INITIALLY DEFERRED" if self.deferred else ""))
        attach = [sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
            table, con, kind, sql.Identifier(self._temp), when)]
        if self.clustered:
            attach.append(sql.SQL("ALTER TABLE ONLY {} CLUSTER ON {}").format(table, con))
        if self.replident:
            attach.append(sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {}").format(
                table, con))
        return [a.as_string() for a in attach]

    @property
    def drop(self) -> str:
        return sql.SQL("DROP INDEX IF EXISTS {}").format(
            sql.Identifier(self.nsp, self._temp)).as_string()


@dataclass(frozen=True)
class PostData:
    """The archive's post-data entries, and which of them can run while rows still load.

    ``per_table`` holds each table's own indexes and primary key/unique/exclusion constraints:
    they need only that table's rows, so they can be built while other tables are still
    loading. The rest (foreign keys, triggers, partitioned-index attachments, policies...) needs
    every table and runs last. ``key_builds`` offers the two-step form of the ``per_table``
    entries that are plain primary key or unique constraints, by dump id.
    """

    entries: list[Entry]
    per_table: dict[str, list[Entry]]
    key_builds: dict[int, KeyBuild] = field(default_factory=dict)


# Per entry with a catalog address: its identity, the relation it belongs to and, for a foreign
# key, the one it references, each with its partition tree's root.
_ENTRY_OBJECTS = """
WITH RECURSIVE up(rel, oid, depth) AS (
       SELECT c.oid, c.oid, 0 FROM pg_class c WHERE c.relkind IN ('r', 'p', 'm', 'f')
        UNION ALL
       SELECT up.rel, i.inhparent, up.depth + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.oid
        WHERE up.depth < 32),
     roots(rel, top) AS (SELECT DISTINCT ON (rel) rel, oid FROM up ORDER BY rel, depth DESC)
SELECT u.classid, u.objid, a.type, a.object_names, a.object_args,
       rn.nspname || '.' || rc.relname, rc.relkind::text,
       own.top, referenced.top
  FROM unnest(%s::oid[], %s::oid[]) AS u(classid, objid)
 CROSS JOIN LATERAL pg_identify_object_as_address(u.classid, u.objid, 0) AS a
 CROSS JOIN LATERAL (SELECT CASE u.classid
          WHEN 'pg_class'::regclass THEN
            (SELECT coalesce(i.indrelid, u.objid) FROM pg_class c
               LEFT JOIN pg_index i ON i.indexrelid = c.oid WHERE c.oid = u.objid)
          WHEN 'pg_constraint'::regclass THEN
            (SELECT nullif(conrelid, 0) FROM pg_constraint WHERE oid = u.objid)
          WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = u.objid)
          WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = u.objid)
          WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = u.objid)
          WHEN 'pg_statistic_ext'::regclass THEN
            (SELECT stxrelid FROM pg_statistic_ext WHERE oid = u.objid)
          END AS rel,
        CASE WHEN u.classid = 'pg_constraint'::regclass THEN
            (SELECT nullif(confrelid, 0) FROM pg_constraint WHERE oid = u.objid) END AS ref) AS r
  LEFT JOIN pg_class rc ON rc.oid = r.rel
  LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
  LEFT JOIN roots own ON own.rel = r.rel
  LEFT JOIN roots referenced ON referenced.rel = r.ref
"""

_ADDRESS = " CROSS JOIN LATERAL pg_identify_object_as_address(u.classid, u.objid, 0) AS a\n"
_NO_ADDRESS = (" CROSS JOIN LATERAL (SELECT NULL::text AS type, NULL::text[] AS object_names,"
               " NULL::text[] AS object_args) AS a\n")
assert _ADDRESS in _ENTRY_OBJECTS
_PG_CONSTRAINT = 2606  # pg_constraint's oid, fixed in every PostgreSQL

# Entries built per table while rows load: they need only their own table's rows.
TABLE_BUILDS = {"INDEX", "CONSTRAINT"}


def split_post_data(archive: SchemaArchive, source_conn: psycopg.Connection[Any], *,
                    roles: bool, addresses: bool = True) -> PostData:
    """The post-data entries with their source identity; each loaded table's own builds apart.

    ``addresses``: with each entry's address, by which the target's copy of it is found; only a
    resumed copy looks (10,000 tables: 30,000 addresses, 7 MiB of the command's memory).
    """
    query = _ENTRY_OBJECTS if addresses else _ENTRY_OBJECTS.replace(_ADDRESS, _NO_ADDRESS)

    def annotate(catalogs: list[tuple[int, int]]) -> dict[tuple[int, int], Annotation]:
        with_oid = [c for c in catalogs if c[0] != 0 and c[1] != 0]
        found: dict[tuple[int, int], Annotation] = {}
        # Row by row, not fetchall(): 30,000 rows at once were 10 MiB more at the peak.
        for classid, objid, kind, names, args, table, relkind, root, ref in source_conn.execute(
                query, [[c[0] for c in with_oid], [c[1] for c in with_oid]]):
            # Interned: 30,000 entries of 10,000 tables repeat a few kinds, schema and table
            # names.
            address = (None if kind is None else
                       (sys.intern(kind), tuple(map(sys.intern, names)), tuple(args)))
            found[(int(classid), int(objid))] = (
                address, None if table is None else sys.intern(table), relkind,
                tuple(sorted({int(r) for r in (root, ref) if r is not None})))
        return found

    entries = _post_data_entries(archive, roles=roles, skip=own_publication_entries(source_conn),
                                 annotate=annotate)
    keys = _key_builds(source_conn)
    per_table: dict[str, list[Entry]] = {}
    key_builds: dict[int, KeyBuild] = {}
    for entry in entries:
        if entry.desc in TABLE_BUILDS and entry.table_kind == "r" and entry.table is not None:
            per_table.setdefault(entry.table, []).append(entry)
            if entry.catalog[0] == _PG_CONSTRAINT and \
                    (build := keys.get(entry.catalog[1])) is not None:
                key_builds[entry.dump_id] = build
    return PostData(entries, per_table, key_builds)


# The part of pg_get_indexdef() after the index and table names: "USING btree (id) WITH (...)".
_INDEXDEF_TAIL = re.compile(r'^CREATE UNIQUE INDEX (?:"(?:[^"]|"")*"|\S+) ON (?:ONLY )?'
                            r'(?:"(?:[^"]|"")*"|[^" ]+)(?:\.(?:"(?:[^"]|"")*"|[^" ]+))? (USING .*)$')


def _key_builds(conn: psycopg.Connection[Any]) -> dict[int, KeyBuild]:
    """Two-step builds for the primary key and unique constraints that allow one, by the
    constraint's oid.

    ``USING INDEX`` takes only a plain unique b-tree index: no expressions, no predicate, no
    INCLUDE columns, no NULLS NOT DISTINCT. Any other constraint keeps pg_dump's own statement.
    The index definition is read with an empty search_path, so every name in it is qualified.
    """
    saved = conn.execute("SELECT current_setting('search_path')").fetchone()
    conn.execute("SELECT set_config('search_path', '', true)")
    try:
        rows = conn.execute(
            """SELECT n.nspname, tc.relname, con.conname, con.oid, con.contype = 'p',
                      con.condeferrable, con.condeferred, i.indisclustered, i.indisreplident,
                      pg_get_indexdef(con.conindid)
                 FROM pg_constraint con
                 JOIN pg_index i ON i.indexrelid = con.conindid
                 JOIN pg_class tc ON tc.oid = con.conrelid AND tc.relkind = 'r'
                 JOIN pg_namespace n ON n.oid = tc.relnamespace
                WHERE con.contype IN ('p', 'u') AND i.indnkeyatts = i.indnatts
                  AND i.indexprs IS NULL AND i.indpred IS NULL
                  AND NOT coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)"""
        ).fetchall()
    finally:
        conn.execute("SELECT set_config('search_path', %s, true)", [saved[0] if saved else ""])
    builds: dict[int, KeyBuild] = {}
    for nsp, rel, con, con_oid, primary, deferrable, deferred, clustered, replident, indexdef in rows:
        match = _INDEXDEF_TAIL.match(indexdef)
        if match is None:
            continue
        builds[int(con_oid)] = KeyBuild(
            sys.intern(nsp), rel, con, int(con_oid), bool(primary), bool(deferrable),
            bool(deferred), bool(clustered), bool(replident), sys.intern(match.group(1)))
    return builds


def copy_database_settings(source_conn: psycopg.Connection[Any],
                           target_conn: psycopg.Connection[Any], target_db: str) -> int:
    """``ALTER DATABASE/ROLE .. SET`` and the database comment, which pg_dump leaves behind.

    Not ``default_transaction_read_only``: on the source it is how a cutover freezes writes
    (``rdsmigrate.online.freeze``), and carried over it would make the target read-only too,
    the copy's own later sessions included."""
    settings = [s for s in catalog.database_settings(source_conn)
                if s.name.lower() != "default_transaction_read_only"]
    roles = {r[0] for r in target_conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    applied = 0
    for s in settings:
        value = _guc_value(s.name, s.value)
        if s.role is None:
            stmt = sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(target_db), sql.Identifier(s.name), value)
        elif s.role in roles:
            stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(s.role), sql.Identifier(target_db), sql.Identifier(s.name), value)
        else:
            continue
        try:
            target_conn.execute(stmt)
        except psycopg.Error as exc:
            raise UserError(
                f"the source's database setting {s.name} = {s.value!r}"
                f"{f' (for role {s.role})' if s.role else ''} cannot be set on the target: "
                f"{str(exc).strip().splitlines()[0]}. Remove it on the source (ALTER DATABASE "
                f".. RESET {s.name}) or make the target accept it, then rerun"
            ) from None
        applied += 1
    row = source_conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    if row and row[0]:
        target_conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(target_db), sql.Literal(row[0])))
    return applied


def _guc_value(name: str, value: str) -> sql.Composable:
    if name.lower() not in _LIST_GUCS:
        return sql.Literal(value)
    items = []
    for raw in re.findall(r'\s*("(?:[^"]|"")*"|[^,]+)\s*(?:,|$)', value):
        item = raw.strip()
        if item.startswith('"') and item.endswith('"'):
            item = item[1:-1].replace('""', '"')
        items.append(sql.Literal(item))
    return sql.SQL(", ").join(items)


def refresh_materialized_views(source_conn: psycopg.Connection[Any],
                               target_conn: psycopg.Connection[Any],
                               in_selection: Callable[[str, str], bool]) -> int:
    """Populate the materialized views that are populated on the source.

    A schema-only dump creates them ``WITH NO DATA``. Views can depend on each other, so failures
    are retried until a pass makes no progress.
    """
    rows = source_conn.execute(
        "SELECT schemaname, matviewname FROM pg_matviews WHERE ispopulated ORDER BY 1, 2"
    ).fetchall()
    pending = [(s, n) for s, n in rows if in_selection(s, n)]
    refreshed = 0
    while pending:
        failed: list[tuple[str, str]] = []
        last_error: Exception | None = None
        for schema_name, view in pending:
            try:
                with target_conn.transaction():
                    target_conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(
                        sql.Identifier(schema_name, view)))
                refreshed += 1
            except psycopg.Error as exc:
                failed.append((schema_name, view))
                last_error = exc
        if len(failed) == len(pending):
            names = ", ".join(f"{s}.{n}" for s, n in failed)
            raise UserError(f"could not populate materialized views {names} on the target: "
                            f"{last_error}")
        pending = failed
    return refreshed
