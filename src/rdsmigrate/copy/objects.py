"""The rest of what a database holds besides table rows: sequences and large objects.

Neither is in a schema-only dump's data: sequence positions are set with ``setval`` (every
sequence, owned by a column or not, with ``is_called`` so the next ``nextval`` matches the
source's), and large objects are copied in bounded pieces with ``lo_get``/``lo_put`` so memory
does not grow with their size, with their comments and, with ``--roles``, their owners and
grants (as for tables: without it the target user owns them and no grant is copied). Both are
read inside the copy's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db import catalog
from rdsmigrate.db.selection import Resolved
from rdsmigrate.progress import Reporter

LO_PIECE = 1 << 20


def copy_sequences(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
                   selected: Resolved) -> int:
    """The selection's sequences: its schemas' free ones and those of its tables' columns."""
    states = catalog.sequence_states(src, selected.sequences_of(src))
    if states:
        # One statement for all of them (the cutover sets them while writes are frozen).
        tgt.execute("SELECT count(pg_catalog.setval(s::regclass, v, c)) "
                    "FROM unnest(%s::text[], %s::int8[], %s::bool[]) AS t(s, v, c)",
                    [[seq.ident.as_string(tgt) for seq in states],
                     [v for v, _ in states.values()], [c for _, c in states.values()]])
    return len(states)


@dataclass
class _LargeObject:
    owner: str
    comment: str | None
    has_acl: bool
    grants: list[tuple[str, str | None, str, bool]] = field(default_factory=list)
    """(grantor, grantee or None for PUBLIC, privilege, with grant option) of its ACL."""


def _large_objects(src: psycopg.Connection[Any]) -> dict[int, _LargeObject]:
    found = {int(oid): _LargeObject(owner, comment, has_acl) for oid, owner, comment, has_acl in
             src.execute("""SELECT oid::int8, pg_get_userbyid(lomowner),
                                   obj_description(oid, 'pg_largeobject'), lomacl IS NOT NULL
                              FROM pg_largeobject_metadata ORDER BY oid""").fetchall()}
    for oid, grantor, grantee, privilege, grantable in src.execute(
            """SELECT m.oid::int8, pg_get_userbyid(a.grantor),
                      CASE WHEN a.grantee <> 0 THEN pg_get_userbyid(a.grantee) END,
                      a.privilege_type, a.is_grantable
                 FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a
                ORDER BY 1, 2, 3, 4""").fetchall():
        found[int(oid)].grants.append((grantor, grantee, privilege, grantable))
    return found


def _large_object_metadata(tgt: psycopg.Connection[Any], oid: int, lo: _LargeObject,
                           roles: bool) -> None:
    """Comment always; owner and ACL with ``--roles``. A grant is made as its grantor (the
    owner, or ``SET ROLE`` to whoever granted it on the source), as pg_dump does."""
    ref = sql.Literal(oid)
    if lo.comment is not None:
        tgt.execute(sql.SQL("COMMENT ON LARGE OBJECT {} IS {}").format(ref, sql.Literal(lo.comment)))
    if not roles:
        return
    tgt.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(ref, sql.Identifier(lo.owner)))
    if not lo.has_acl:
        return
    # A non-NULL ACL replaces the owner's default privileges: start from none, then grant.
    tgt.execute(sql.SQL("REVOKE ALL ON LARGE OBJECT {} FROM {}").format(ref, sql.Identifier(lo.owner)))
    for grantor, grantee, privilege, grantable in lo.grants:
        as_other = grantor != lo.owner
        if as_other:
            tgt.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(grantor)))
        tgt.execute(sql.SQL("GRANT {} ON LARGE OBJECT {} TO {}{}").format(
            sql.SQL(privilege), ref,
            sql.Identifier(grantee) if grantee is not None else sql.SQL("PUBLIC"),
            sql.SQL(" WITH GRANT OPTION" if grantable else "")))
        if as_other:
            tgt.execute("RESET ROLE")


def copy_large_objects(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
                       reporter: Reporter, *, roles: bool = False) -> tuple[int, int]:
    """Recreate every large object with the same OID, comment and (``roles``) owner and ACL;
    returns (count, bytes)."""
    found = _large_objects(src)
    oids = list(found)
    total = 0
    with tgt.transaction():
        for oid in oids:
            tgt.execute("SELECT lo_unlink(%s) FROM pg_largeobject_metadata WHERE oid = %s", [oid, oid])
            tgt.execute("SELECT lo_create(%s)", [oid])
            offset = 0
            while True:
                row = src.execute("SELECT lo_get(%s, %s, %s)", [oid, offset, LO_PIECE]).fetchone()
                piece = bytes(row[0]) if row and row[0] is not None else b""
                if not piece:
                    break
                tgt.execute("SELECT lo_put(%s, %s, %s)", [oid, offset, piece])
                offset += len(piece)
                total += len(piece)
                if len(piece) < LO_PIECE:
                    break
            _large_object_metadata(tgt, oid, found[oid], roles)
    if oids:
        reporter.info(f"large objects: {len(oids)} copied")
    return len(oids), total
