"""A fingerprint of the replicated tables' definitions, to detect DDL on the source.

PostgreSQL's logical replication carries rows, never DDL: a column added on the source after the
copy makes the apply worker fail on the target (or silently drop the column's values when the
target has fewer columns), and a table created after the copy is not on the target at all. So
``sync`` records, before the copy's snapshot is taken, an md5 per relation of everything a change
of which would break replication or the cutover; ``status`` and ``cutover`` compare it with the
source as it is now. Taken before the snapshot, a change racing the copy shows as drift (a false
alarm, on the safe side) rather than being missed.

Definitions are rendered with an empty ``search_path``, so every name in them is qualified and the
text does not depend on the session.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rdsmigrate.db.selection import EVERYTHING, Resolved

_FINGERPRINT_SQL = """
SELECT n.nspname || '.' || c.relname, c.relkind::text,
       md5(concat_ws(E'\\n', c.relkind, c.relreplident, c.relpersistence,
           pg_get_expr(c.relpartbound, c.oid),
           (SELECT string_agg(concat_ws(' ', quote_ident(a.attname),
                                        format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                        a.attidentity, a.attgenerated,
                                        pg_get_expr(d.adbin, d.adrelid)), ', ' ORDER BY a.attnum)
              FROM pg_attribute a
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), ', '
                              ORDER BY co.conname)
              FROM pg_constraint co WHERE co.conrelid = c.oid),
           (SELECT string_agg(pg_get_indexdef(i.indexrelid) || ' ' || i.indisreplident, ', '
                              ORDER BY 1)
              FROM pg_index i WHERE i.indrelid = c.oid)))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'S') AND c.relpersistence IN ('p', 'u')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
   AND (cardinality(%(schemas)s::text[]) = 0 OR n.nspname = ANY(%(schemas)s::text[]))
   AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_class'::regclass
                    AND dep.objid = c.oid AND dep.deptype = 'e')
"""


def take(conn: psycopg.Connection[Any], selected: Resolved = EVERYTHING) -> dict[str, str]:
    """``schema.name`` -> md5 of its definition, for every table, partitioned table and sequence
    in the selection (excluded tables and their sequences left out, as the copy leaves them out).
    """
    schemas = sorted(selected.schemas) if selected.schemas is not None else []
    excluded = {f"{s}.{n}" for s, n in selected.excluded | selected.excluded_sequences}
    previous = conn.execute("SELECT current_setting('search_path')").fetchone()
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
    try:
        rows = conn.execute(_FINGERPRINT_SQL, {"schemas": schemas}).fetchall()
    finally:
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)",
                     [previous[0] if previous else ""])
    return {name: digest for name, _kind, digest in rows if name not in excluded}


def drift(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """One line per relation whose definition is not what it was at copy time."""
    lines = [f"{name}: created since the copy (it is not on the target)"
             for name in sorted(current.keys() - recorded.keys())]
    lines += [f"{name}: dropped since the copy"
              for name in sorted(recorded.keys() - current.keys())]
    lines += [f"{name}: definition changed since the copy (columns, constraints, indexes or "
              "replica identity)"
              for name in sorted(recorded.keys() & current.keys()) if recorded[name] != current[name]]
    return lines
