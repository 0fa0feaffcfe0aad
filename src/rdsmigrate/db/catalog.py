"""The one place that knows how to list what a database holds.

Everything the phases move or compare (tables, sequences, extensions, large objects,
database-level settings) is read here from the system catalogs, so ``copy``, ``verify`` and
``preflight`` always agree on what "every table" means: ordinary and unlogged tables including
partition leaves and inheritance children (whose rows ``COPY tbl`` reads without descending), but
not partitioned parents (they hold no rows), not views, foreign tables, temporary tables, system
schemas, or objects that belong to an extension (``CREATE EXTENSION`` recreates those). Which of
them a command selects (``--schema``/``--exclude-table``) is decided once, in
:mod:`rdsmigrate.db.selection`, which hands the listings here its predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
TOOL_SCHEMA = "rdsmigrate"
"""The tool's own schema on a target (its record of online migrations): never copied, compared
or counted as user data."""

# Relations that belong to an extension are created by CREATE EXTENSION on the target.
_NOT_EXTENSION_MEMBER = """
    NOT EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
"""

_USER_SCHEMA = f"""
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', '{TOOL_SCHEMA}')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    generated: bool
    """A stored generated column: the target computes it, so it is never copied."""
    base_type: str | None
    """The ``pg_catalog`` type name (``int4``, ``text``) after resolving domains, or None for a
    type of another schema (enums, composites, extensions' types): ``verify`` decides from it
    whether a value is hashed as itself or as its text."""


@dataclass(frozen=True, slots=True)
class Table:
    oid: int
    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Primary key columns, else those of a unique index on NOT NULL columns, else empty."""
    key_types: tuple[str, ...]
    replica_identity: str
    """pg_class.relreplident: d (default, the primary key), n (nothing), f (full), i (index)."""
    has_replica_identity_index: bool
    has_primary_key: bool
    partition_of: str | None
    """Qualified name of the partitioned root when this table is a partition leaf."""
    est_rows: int
    bytes: int
    """On-disk size of the heap and its TOAST (their main forks: the rows that travel), without
    indexes or the free space and visibility maps."""
    unlogged: bool = False
    """``UNLOGGED``: its changes are not in the WAL, so logical replication never carries them."""

    @property
    def qualified(self) -> str:
        """``schema.name`` as written by people; for SQL use :attr:`ident`."""
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def copy_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.generated)

    @property
    def column_list(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c.name) for c in self.copy_columns)

    @property
    def integer_key(self) -> str | None:
        """The single integer key column that range splitting and chunked checksums use."""
        if len(self.key) == 1 and self.key_types[0] in ("smallint", "integer", "bigint"):
            return self.key[0]
        return None

    @property
    def can_replicate_changes(self) -> bool:
        """Whether logical replication can carry UPDATE and DELETE for this table."""
        if self.replica_identity == "f":
            return True
        if self.replica_identity == "i":
            return self.has_replica_identity_index
        if self.replica_identity == "d":
            return self.has_primary_key
        return False


# The size of a heap and of its TOAST table (their main forks: the free space and visibility
# maps do not travel). Measuring a relation (pg_relation_size) opens it: a lock and, in a new
# session, a relation cache entry built from the catalogs, about 0.1 ms each, which at 10,000
# tables was most of this query's time (pg_table_size, which also stats the maps and the TOAST
# index, was 2-3 s). So a relation the statistics call small is taken at their word
# (relpages, kept by VACUUM, ANALYZE and CREATE INDEX), and measured when they call it big or
# have never looked at it (reltuples -1, PostgreSQL 14+; before 14 that is not told apart from
# empty, so there every relation is measured). A small table grown big since its last ANALYZE
# without autovacuum noticing is planned as small: whole, not split, which costs balance, not
# rows.
_MEASURED_ABOVE_PAGES = 128
_SIZE = ("CASE WHEN {r}.reltuples >= 0 AND {r}.relpages < " + str(_MEASURED_ABOVE_PAGES) + """
                     AND current_setting('server_version_num')::int >= 140000
                THEN {r}.relpages::int8 * current_setting('block_size')::int
                ELSE pg_relation_size({r}.oid) END""")

_TABLES_SQL = f"""
SELECT c.oid::int8, n.nspname, c.relname, c.relreplident::text,
       c.reltuples::int8 AS est_rows,
       {_SIZE.format(r="c")} + coalesce({_SIZE.format(r="t")}, 0) AS bytes,
       (SELECT pn.nspname || '.' || pc.relname
          FROM pg_partition_root(c.oid) r(oid) JOIN pg_class pc ON pc.oid = r.oid
          JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE c.relispartition) AS partition_of,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_ri_index,
       c.relpersistence = 'u' AS unlogged
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
   AND {_USER_SCHEMA}
   AND {_NOT_EXTENSION_MEMBER}
 ORDER BY n.nspname, c.relname
"""

# A domain's typbasetype may be another domain: walk each chain to the type that is not one.
_COLUMNS_SQL = """
WITH RECURSIVE domain_base(oid, base) AS (
    SELECT oid, typbasetype FROM pg_type WHERE typtype = 'd'
    UNION ALL
    SELECT d.oid, t.typbasetype FROM domain_base d JOIN pg_type t ON t.oid = d.base
     WHERE t.typtype = 'd')
SELECT a.attrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
       CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace THEN bt.typname::text END
  FROM pg_attribute a
  LEFT JOIN domain_base db ON db.oid = a.atttypid
  JOIN pg_type bt ON bt.oid = coalesce(db.base, a.atttypid) AND bt.typtype <> 'd'
 WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

# Primary key first, then the smallest unique index over NOT NULL, non-expression columns.
_KEYS_SQL = """
SELECT DISTINCT ON (i.indrelid) i.indrelid::int8, i.indisprimary,
       array_agg(a.attname ORDER BY k.ord) AS cols,
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = ANY(%s::oid[]) AND i.indisunique AND i.indisvalid
   AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indrelid, i.indexrelid, i.indisprimary, i.indnkeyatts
HAVING bool_and(a.attnotnull) AND count(*) = i.indnkeyatts
 ORDER BY i.indrelid, i.indisprimary DESC, count(*), i.indexrelid
"""


def without_jit(conn: psycopg.Connection[Any]) -> None:
    """Turn JIT compilation off for the session of catalog queries.

    The planner's cost of a catalog query grows with the number of relations (a function such as
    ``pg_get_viewdef`` or ``pg_relation_size`` per row of ``pg_class``), so past a few thousand
    tables it crosses ``jit_above_cost`` and the server spends seconds compiling a query that
    runs in a fraction of one (the xml objects check: 3.2 s of JIT for 0.3 s of work at 10,000
    tables). Catalog scans never gain from it. A plain session ``SET``: call it outside a
    transaction, or where the session ends with the transaction.
    """
    conn.execute("SET jit = off")


def list_tables(conn: psycopg.Connection[Any],
                keep: Callable[[str, str], bool] | None = None) -> list[Table]:
    """Every table holding rows whose ``(schema, name)`` ``keep`` accepts (all without one).

    Callers pass :meth:`rdsmigrate.db.selection.Resolved.covers`: which tables ``--schema`` and
    ``--exclude-table`` select is decided there, once.
    """
    rows = conn.execute(_TABLES_SQL).fetchall()
    rows = [r for r in rows if keep is None or keep(r[1], r[2])]
    oids = [r[0] for r in rows]
    columns: dict[int, list[Column]] = {oid: [] for oid in oids}
    # One Column object per distinct column: thousands of tables of one shape (a schema per
    # tenant) share theirs, which saves most of the objects' time and memory.
    known: dict[tuple[str, str, bool, str | None], Column] = {}
    # Row by row, not fetchall(): a list of 50,000 rows at once outlives them as holes.
    for oid, *fields in conn.execute(_COLUMNS_SQL, [oids]):
        shape = (fields[0], fields[1], fields[2], fields[3])
        column = known.get(shape)
        if column is None:
            column = known[shape] = Column(*shape)
        columns[oid].append(column)
    keys: dict[int, tuple[bool, tuple[str, ...], tuple[str, ...]]] = {}
    for oid, primary, cols, types in conn.execute(_KEYS_SQL, [oids]):
        keys[oid] = (primary, tuple(cols), tuple(types))
    tables = []
    for oid, schema, name, replident, est_rows, size, partition_of, has_ri, unlogged in rows:
        primary, key, key_types = keys.get(oid, (False, (), ()))
        table = Table(
            oid=oid, schema=schema, name=name, columns=tuple(columns[oid]), key=key,
            key_types=key_types, replica_identity=replident, has_replica_identity_index=has_ri,
            has_primary_key=primary, partition_of=partition_of, est_rows=max(int(est_rows), 0), bytes=int(size),
            unlogged=bool(unlogged),
        )
        tables.append(table)
    return tables


@dataclass(frozen=True)
class Relation:
    """A table as ``--exclude-table`` sees it: ordinary, unlogged or partitioned."""

    oid: int
    schema: str
    name: str
    children: tuple[int, ...]
    """Partitions and inheritance children (one level)."""
    owned_sequences: tuple[tuple[str, str], ...]
    """``(schema, name)`` of the serial and identity sequences its columns own."""


def list_relations(conn: psycopg.Connection[Any]) -> list[Relation]:
    rows = conn.execute(
        f"""
        SELECT c.oid::int8, n.nspname, c.relname,
               array(SELECT i.inhrelid::int8 FROM pg_inherits i WHERE i.inhparent = c.oid
                      ORDER BY 1),
               array(SELECT array[sn.nspname::text, s.relname::text]
                       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                       JOIN pg_namespace sn ON sn.oid = s.relnamespace
                      WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                      ORDER BY 1)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND c.relpersistence IN ('p', 'u')
           AND {_USER_SCHEMA} AND {_NOT_EXTENSION_MEMBER}
         ORDER BY n.nspname, c.relname
        """
    ).fetchall()
    return [Relation(int(oid), schema, name, tuple(int(c) for c in children),
                     tuple((s, n) for s, n in owned))
            for oid, schema, name, children, owned in rows]


def dependent_views(conn: psycopg.Connection[Any], oids: Seq[int]) -> list[tuple[str, str]]:
    """``(schema, name)`` of the views and materialized views built on ``oids``, directly or
    through other views."""
    rows = conn.execute(
        """WITH RECURSIVE dep(oid) AS (
               SELECT unnest(%s::oid[])
             UNION
               SELECT r.ev_class FROM dep
                 JOIN pg_depend d ON d.refobjid = dep.oid AND d.refclassid = 'pg_class'::regclass
                  AND d.classid = 'pg_rewrite'::regclass
                 JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> dep.oid)
           SELECT n.nspname, c.relname FROM dep JOIN pg_class c ON c.oid = dep.oid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('v', 'm') ORDER BY 1, 2""", [list(oids)]).fetchall()
    return [(s, n) for s, n in rows]


def foreign_keys_into(conn: psycopg.Connection[Any], oids: Seq[int]) -> list[tuple[str, str, str]]:
    """``(schema, table, constraint)`` of the foreign keys of other tables that reference
    ``oids`` (partitions' inherited copies left out: their parent's is named)."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname, k.conname FROM pg_constraint k
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE k.contype = 'f' AND k.conparentid = 0 AND k.confrelid = ANY(%s::oid[])
              AND k.conrelid <> ALL(%s::oid[]) ORDER BY 1, 2, 3""",
        [list(oids), list(oids)]).fetchall()
    return [(s, t, k) for s, t, k in rows]


def list_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    """User schemas (those of extensions included: ``pg_dump --schema`` may name them)."""
    rows = conn.execute(
        f"SELECT n.nspname FROM pg_namespace n WHERE {_USER_SCHEMA} ORDER BY 1").fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class Sequence:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def list_sequences(conn: psycopg.Connection[Any],
                   keep: Callable[[str, str], bool] | None = None) -> list[Sequence]:
    """Every sequence, owned by a column or not (identity columns' included), whose
    ``(schema, name)`` ``keep`` accepts (see :meth:`.selection.Resolved.covers_sequence`)."""
    rows = conn.execute(
        f"""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND {_USER_SCHEMA} AND {_NOT_EXTENSION_MEMBER}
         ORDER BY 1, 2
        """
    ).fetchall()
    return [Sequence(s, n) for s, n in rows if keep is None or keep(s, n)]


def relations_fingerprint(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """A value that changes when a table, view or sequence is created, dropped or renamed (its
    schema too): whether a selection resolved earlier still holds, for a few milliseconds where
    resolving again takes most of a second at 10,000 tables."""
    row = conn.execute(
        """SELECT count(*), coalesce(sum(c.oid::int8), 0),
                  coalesce(sum(hashtext(n.nspname || '.' || c.relname)::int8), 0),
                  coalesce(sum(c.relkind::"char"::int), 0)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')""").fetchone()
    assert row is not None
    return tuple(row)


SEQUENCES_PER_QUERY = 500


def sequence_states(conn: psycopg.Connection[Any],
                    sequences: Seq[Sequence]) -> dict[Sequence, tuple[int, bool]]:
    """``(last_value, is_called)`` of each sequence: the pair ``setval`` needs to reproduce it.

    A query per few hundred sequences, not one each: a schema per tenant has thousands, and the
    cutover reads them while writes are frozen."""
    states: dict[Sequence, tuple[int, bool]] = {}
    for first in range(0, len(sequences), SEQUENCES_PER_QUERY):
        chunk = sequences[first:first + SEQUENCES_PER_QUERY]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, last_value, is_called FROM {}").format(sql.Literal(i), s.ident)
            for i, s in enumerate(chunk))
        for i, last_value, is_called in conn.execute(query).fetchall():
            states[chunk[int(i)]] = (int(last_value), bool(is_called))
    return states


@dataclass(frozen=True)
class Extension:
    name: str
    version: str
    schema: str


def list_extensions(conn: psycopg.Connection[Any]) -> list[Extension]:
    rows = conn.execute(
        """SELECT e.extname, e.extversion, n.nspname FROM pg_extension e
           JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1"""
    ).fetchall()
    return [Extension(*r) for r in rows]


def available_extensions(conn: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}


def large_object_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class DatabaseSetting:
    """A ``ALTER DATABASE [..] SET`` entry; ``role`` is set for ``ALTER ROLE .. IN DATABASE``."""

    role: str | None
    name: str
    value: str


def database_settings(conn: psycopg.Connection[Any]) -> list[DatabaseSetting]:
    """Per-database settings, which ``pg_dump`` without ``--create`` silently drops."""
    rows = conn.execute(
        """SELECT r.rolname, s.setconfig FROM pg_db_role_setting s
           JOIN pg_database d ON d.oid = s.setdatabase
           LEFT JOIN pg_roles r ON r.oid = s.setrole
           WHERE d.datname = current_database() ORDER BY 1 NULLS FIRST"""
    ).fetchall()
    out = []
    for role, config in rows:
        for item in config or []:
            name, _, value = item.partition("=")
            out.append(DatabaseSetting(role, name, value))
    return out


def database_size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def user_relation_count(conn: psycopg.Connection[Any]) -> int:
    """Tables, views, sequences, types and functions created by users: 0 means empty."""
    row = conn.execute(
        f"""
        SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r','p','v','m','S','f') AND {_USER_SCHEMA}
                   AND {_NOT_EXTENSION_MEMBER})
             + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE {_USER_SCHEMA}
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e'))
        """
    ).fetchone()
    return int(row[0]) if row else 0
