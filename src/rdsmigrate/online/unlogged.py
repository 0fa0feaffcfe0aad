"""Unlogged tables in an online migration: refused, unless the user chooses how they travel.

PostgreSQL's logical replication never carries an unlogged table: its changes are not in the WAL.
A publication ``FOR ALL TABLES`` skips them without a word, and one that lists tables refuses
them ("cannot add relation ... to publication"). Copied once by ``sync`` and then forgotten, every
change made to them afterwards would be lost at the cutover, and row counts would not notice an
``UPDATE``. A crash restart of either server also empties them. So ``sync`` refuses them (the
``unlogged`` prerequisite, in :mod:`rdsmigrate.prerequisites`), naming the choices:

- make them logged for the migration (``ALTER TABLE .. SET LOGGED`` on the source), or
- leave them out (``--exclude-table``), or
- ``--unlogged copy-at-cutover``: they stay out of the publication, and the cutover copies them
  again while the source is frozen (so the copy is final), then counts them with every other table.
  The write downtime grows with their size. This module is that copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from rdsmigrate.copy.plan import Unit
from rdsmigrate.copy.stream import copy_unit
from rdsmigrate.db import catalog


class Recopied(BaseModel):
    tables: int
    rows: int


def copy_again(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
               names: Sequence[str]) -> Recopied:
    """Replace the target's rows of the named tables with the frozen source's, in one target
    transaction (all of them or none), read from one source snapshot.

    Foreign keys between them are satisfied by the order (referenced tables first); user
    triggers are not fired, as the apply worker does not fire them for the logged tables.
    """
    wanted = set(names)
    tables = {t.oid: t for t in catalog.list_tables(src) if t.qualified in wanted}
    if not tables:
        return Recopied(tables=0, rows=0)
    ordered = _referenced_first(src, tables)
    rows = 0
    with src.transaction(), tgt.transaction():
        src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tgt.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.ident for t in ordered)))
        for t in ordered:
            tgt.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(t.ident))
            # The whole table, read by a range that is no range: a plain COPY into the rows the
            # TRUNCATE above emptied, inside this transaction.
            unit = Unit(table=t, index=0, of=1, where=sql.SQL("true"), label="unlogged",
                        est_bytes=t.bytes)
            rows += copy_unit(src, tgt, unit, binary=False, progress=lambda _r, _b: True)
            tgt.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(t.ident))
    return Recopied(tables=len(ordered), rows=rows)


def _referenced_first(conn: psycopg.Connection[Any],
                      tables: dict[int, catalog.Table]) -> list[catalog.Table]:
    edges = conn.execute(
        "SELECT conrelid::int8, confrelid::int8 FROM pg_catalog.pg_constraint WHERE contype = 'f' "
        "AND conrelid = ANY(%(o)s::oid[]) AND confrelid = ANY(%(o)s::oid[]) "
        "AND conrelid <> confrelid", {"o": list(tables)}).fetchall()
    needs: dict[int, set[int]] = {oid: set() for oid in tables}
    for child, parent in edges:
        needs[int(child)].add(int(parent))
    ordered: list[catalog.Table] = []
    while needs:
        ready = sorted(oid for oid, deps in needs.items() if not deps - {t.oid for t in ordered})
        if not ready:  # a cycle of foreign keys: any order (the checks then run at the end)
            ready = sorted(needs)
        for oid in ready:
            ordered.append(tables[oid])
            del needs[oid]
    return ordered
