"""Sequences and large objects: the data a database holds outside its tables.

A sequence is compared by ``(last_value, is_called)``, the pair ``setval`` needs, because the next
value the application gets depends on both. Large objects are compared by the set of OIDs (the
application stores them in its rows), an md5 of each one's content, computed on its server, and
their comments, and with ``--roles`` their owners and grants (by role name and grantor), which
only ``copy --roles`` carries.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rdsmigrate.db import catalog
from rdsmigrate.db.selection import Resolved
from rdsmigrate.verify.report import Difference, LargeObjectResult, SequenceResult

# md5 per slice, then md5 of the slices' digests: the server never holds more than one slice of
# a large object in memory, however big it is (a bytea value tops out at 1 GB).
LO_SLICE = 64 * 1024 * 1024

_LO_DIGESTS_SQL = """
SELECT m.oid::int8,
       (WITH RECURSIVE s(off, piece) AS (
            SELECT 0::int8, lo_get(m.oid, 0, %(slice)s)
            UNION ALL
            SELECT s.off + %(slice)s, lo_get(m.oid, s.off + %(slice)s, %(slice)s)
              FROM s WHERE length(s.piece) = %(slice)s)
        SELECT md5(string_agg(md5(s.piece), '' ORDER BY s.off)) FROM s),
       obj_description(m.oid, 'pg_largeobject'),
       pg_get_userbyid(m.lomowner),
       CASE WHEN m.lomacl IS NOT NULL THEN
         (SELECT coalesce(string_agg(g, ', ' ORDER BY g), '')
            FROM (SELECT concat_ws(' ', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                             ELSE pg_get_userbyid(a.grantee) END,
                                   a.privilege_type, CASE WHEN a.is_grantable THEN 'grantable' END,
                                   'by', pg_get_userbyid(a.grantor)) AS g
                    FROM aclexplode(m.lomacl) a) grants) END
  FROM pg_largeobject_metadata m
 ORDER BY m.oid
"""


def sequence_states(conn: psycopg.Connection[Any], selected: Resolved) -> dict[str, tuple[int, bool]]:
    states = catalog.sequence_states(conn, selected.sequences_of(conn))
    return {s.qualified: state for s, state in states.items()}


def compare_sequences(source: dict[str, tuple[int, bool]], target: dict[str, tuple[int, bool]],
                      ) -> tuple[list[SequenceResult], list[Difference]]:
    results: list[SequenceResult] = []
    differences: list[Difference] = []
    for name in sorted(source.keys() | target.keys()):
        src, tgt = source.get(name), target.get(name)
        result = SequenceResult(
            name=name,
            source_last_value=src[0] if src else None, source_is_called=src[1] if src else None,
            target_last_value=tgt[0] if tgt else None, target_is_called=tgt[1] if tgt else None,
            identical=src == tgt,
        )
        results.append(result)
        if src is None:
            differences.append(Difference(kind="extra_sequence", object=name,
                                          detail="sequence exists only on the target"))
        elif tgt is None:
            differences.append(Difference(kind="missing_sequence", object=name,
                                          detail="sequence is missing on the target"))
        elif src != tgt:
            differences.append(Difference(
                kind="sequence", object=name,
                detail=f"last_value, is_called: source {src[0]}, {src[1]}; target {tgt[0]}, {tgt[1]}",
            ))
    return results, differences


LargeObjects = dict[int, tuple[str, str | None, str, str | None]]
"""OID -> (content digest, comment, owner, grants or None for the default ACL)."""


def large_object_digests(conn: psycopg.Connection[Any]) -> LargeObjects:
    """Every large object's digest and metadata (``lo_get`` needs only read access to each)."""
    rows = conn.execute(_LO_DIGESTS_SQL, {"slice": LO_SLICE}).fetchall()
    return {int(oid): (str(digest), comment, owner, acl)
            for oid, digest, comment, owner, acl in rows}


def compare_large_objects(source: LargeObjects, target: LargeObjects, *, roles: bool = False,
                          ) -> tuple[LargeObjectResult, list[Difference]]:
    missing = sorted(source.keys() - target.keys())
    extra = sorted(target.keys() - source.keys())
    both = source.keys() & target.keys()
    changed = sorted(o for o in both if source[o][0] != target[o][0])
    comments = sorted(o for o in both if source[o][1] != target[o][1])
    owners = sorted(o for o in both if roles and source[o][2] != target[o][2])
    grants = sorted(o for o in both if roles and source[o][3] != target[o][3])
    result = LargeObjectResult(source_count=len(source), target_count=len(target),
                               missing=missing, extra=extra, changed=changed,
                               comment_differs=comments, owner_differs=owners,
                               acl_differs=grants,
                               identical=not (missing or extra or changed or comments or owners
                                              or grants))
    differences = []
    for kind, oids, what in (("missing_large_object", missing, "missing on the target"),
                             ("extra_large_object", extra, "only on the target"),
                             ("large_object", changed, "content differs"),
                             ("large_object_comment", comments, "comment differs"),
                             ("large_object_owner", owners, "owner differs"),
                             ("large_object_acl", grants, "grants differ")):
        if oids:
            shown = ", ".join(str(o) for o in oids[:20]) + (" ..." if len(oids) > 20 else "")
            differences.append(Difference(kind=kind, object="large objects",
                                          detail=f"{len(oids)} {what}: OID {shown}"))
    return result, differences
