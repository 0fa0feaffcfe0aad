"""Streaming one unit of rows from the source to the target, with no file in between.

``COPY .. TO STDOUT`` on the source feeds ``COPY .. FROM STDIN`` on the target through psycopg.
libpq hands over one row at a time; forwarding each row as its own write costs about twice the
time of a psql pipe, so rows are gathered into ~1 MiB writes. Memory per worker stays at about
that buffer whatever the table's size.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.copy.plan import Unit
from rdsmigrate.progress import Task

WRITE_BYTES = 1 << 20


class Stopped(Exception):
    """The copy was asked to stop (Ctrl-C, or another worker failed)."""


def copy_statements(unit: Unit, binary: bool) -> tuple[sql.Composed, sql.Composed]:
    table = unit.table
    fmt = sql.SQL(" (FORMAT binary)") if binary else sql.SQL("")
    if unit.where is None:
        out = sql.SQL("COPY {} ({}) TO STDOUT{}").format(table.ident, table.column_list, fmt)
    else:
        # ONLY: an inheritance parent's rows, not its children's (they are units of their own).
        out = sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT{}").format(
            table.column_list, table.ident, unit.where, fmt)
    into = sql.SQL("COPY {} ({}) FROM STDIN{}").format(table.ident, table.column_list, fmt)
    return out, into


def copy_unit(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], unit: Unit,
              binary: bool, task: Task, stop: threading.Event) -> int:
    """Copy ``unit``; returns the rows the target loaded. The caller commits the target."""
    out_sql, in_sql = copy_statements(unit, binary)
    with src.cursor() as scur, tgt.cursor() as tcur:
        with scur.copy(out_sql) as out, tcur.copy(in_sql) as into:
            buf = bytearray()
            rows = 0
            for data in out:
                buf += data
                rows += 1
                if len(buf) >= WRITE_BYTES:
                    into.write(buf)
                    task.advance(rows, len(buf))
                    buf = bytearray()
                    rows = 0
                    if stop.is_set():
                        raise Stopped
            if buf:
                into.write(buf)
                task.advance(rows, len(buf))
        loaded = max(tcur.rowcount, 0)
        # Binary COPY's header and trailer arrive as chunks of their own: trust the server's count.
        task.rows = loaded
        return loaded
