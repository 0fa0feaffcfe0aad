"""``copy --replace``: drop exactly the target's objects that the copy recreates.

Found from the archive's table of contents and the catalogs, never from SQL text: each entry's
catalog address on the source (``pg_identify_object_as_address``) names the object, the target's
``pg_get_object_address`` finds its copy there, and only those are dropped. (Splitting
``pg_restore --clean``'s script on ``;`` ran a ``DROP TABLE`` it found inside a function body.)

Objects are dropped in reverse archive order, which is reverse dependency order, one by one
with a fresh look at whether each still exists (dropping a table takes its indexes, constraints
and partitions with it). ``CASCADE`` is used only when everything it would take is itself
recreated by the copy, or part of something that is (a column default, a view's rule, a foreign
key of a recreated table); anything else on the target that depends on a recreated object stops
the copy before anything is dropped from it, with the name of what is in the way.

Indexes, constraints, triggers, rules and policies go with their tables and are not dropped on
their own.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate import schema
from rdsmigrate.errors import UserError

# Address type -> the DROP command for it; others (sub-objects of tables) go with their table.
_DROP = {
    "table": "TABLE", "view": "VIEW", "materialized view": "MATERIALIZED VIEW",
    "sequence": "SEQUENCE", "foreign table": "FOREIGN TABLE", "type": "TYPE",
    "function": "FUNCTION", "procedure": "PROCEDURE", "aggregate": "AGGREGATE",
    "schema": "SCHEMA", "collation": "COLLATION", "conversion": "CONVERSION",
    "text search configuration": "TEXT SEARCH CONFIGURATION",
    "text search dictionary": "TEXT SEARCH DICTIONARY",
    "text search parser": "TEXT SEARCH PARSER", "text search template": "TEXT SEARCH TEMPLATE",
    "operator": "OPERATOR", "operator class": "OPERATOR CLASS",
    "operator family": "OPERATOR FAMILY", "extension": "EXTENSION",
    "foreign-data wrapper": "FOREIGN DATA WRAPPER", "server": "SERVER",
    "event trigger": "EVENT TRIGGER", "publication": "PUBLICATION", "cast": "CAST",
    "statistics object": "STATISTICS",
}

_ADDRESSES = """
SELECT a.type, a.object_names, a.object_args
  FROM unnest(%s::oid[], %s::oid[]) WITH ORDINALITY AS u(classid, objid, n)
 CROSS JOIN LATERAL pg_identify_object_as_address(u.classid, u.objid, 0) AS a
 ORDER BY u.n
"""

# What DROP .. CASCADE of the object would take (normal and automatic dependents, recursively),
# each with the objects it belongs to (through automatic and internal dependencies).
_DEPENDENTS = """
WITH RECURSIVE dependents(classid, objid) AS (
       SELECT d.classid, d.objid FROM pg_depend d
        WHERE d.refclassid = %(classid)s AND d.refobjid = %(objid)s AND d.deptype IN ('n', 'a')
        UNION
       SELECT d.classid, d.objid FROM pg_depend d
         JOIN dependents x ON d.refclassid = x.classid AND d.refobjid = x.objid
        WHERE d.deptype IN ('n', 'a')),
     owners(dep_classid, dep_objid, classid, objid) AS (
       SELECT classid, objid, classid, objid FROM dependents
        UNION
       SELECT o.dep_classid, o.dep_objid, d.refclassid, d.refobjid FROM pg_depend d
         JOIN owners o ON d.classid = o.classid AND d.objid = o.objid
        WHERE d.deptype IN ('a', 'i'))
SELECT dep_classid, dep_objid, pg_describe_object(dep_classid, dep_objid, 0),
       array_agg(classid::int8), array_agg(objid::int8)
  FROM owners GROUP BY dep_classid, dep_objid
"""


def drop_recreated(archive: schema.SchemaArchive, source_conn: psycopg.Connection[Any],
                   target_conn: psycopg.Connection[Any], *, roles: bool) -> int:
    """Drop what the copy recreates from the target, in one transaction; how many were."""
    objects = schema.restorable_objects(archive, roles=roles)
    addresses = source_conn.execute(
        _ADDRESSES, [[c for c, _ in objects], [o for _, o in objects]]).fetchall()
    with target_conn.transaction():
        found: list[tuple[str, int, int]] = []
        for kind, names, args in addresses:
            if kind not in _DROP:
                continue
            try:
                with target_conn.transaction():
                    row = target_conn.execute("SELECT classid, objid FROM pg_get_object_address("
                                              "%s, %s, %s)", [kind, names, args]).fetchone()
            except psycopg.Error:
                continue  # not on the target: nothing to drop
            if row is not None:
                found.append((kind, int(row[0]), int(row[1])))
        recreated = {(c, o) for _, c, o in found}
        dropped = 0
        for kind, classid, objid in reversed(found):
            if _drop(target_conn, kind, classid, objid, recreated):
                dropped += 1
    return dropped


def _drop(conn: psycopg.Connection[Any], kind: str, classid: int, objid: int,
          recreated: set[tuple[int, int]]) -> bool:
    row = conn.execute("SELECT identity FROM pg_identify_object(%s, %s, 0)",
                       [classid, objid]).fetchone()
    if row is None or row[0] is None:
        return False  # already gone with something dropped before it
    identity = str(row[0])
    blocking = []
    cascade = False
    for dep_classid, dep_objid, description, owner_classes, owner_ids in conn.execute(
            _DEPENDENTS, {"classid": classid, "objid": objid}).fetchall():
        cascade = True
        owners = {(int(dep_classid), int(dep_objid)),
                  *zip((int(c) for c in owner_classes), (int(o) for o in owner_ids), strict=True)}
        if not owners & (recreated | {(classid, objid)}):
            blocking.append(str(description))
    if blocking:
        raise UserError(
            f"--replace must drop {kind} {identity} on the target to recreate it, but "
            f"{', '.join(sorted(blocking)[:3])} depends on it and is not part of the source's "
            "schema; drop or move that first (nothing was dropped)")
    command = _DROP[kind]
    if kind == "type":
        typtype = conn.execute("SELECT typtype FROM pg_type WHERE oid = %s", [objid]).fetchone()
        command = "DOMAIN" if typtype and typtype[0] == "d" else "TYPE"
    conn.execute(sql.SQL("DROP {} {}{}").format(
        sql.SQL(command), sql.SQL(identity), sql.SQL(" CASCADE" if cascade else "")))
    return True
