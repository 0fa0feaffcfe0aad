"""Streaming one unit of rows from the source to the target, with no file in between.

``COPY .. TO STDOUT`` on the source feeds ``COPY .. FROM STDIN`` on the target. libpq hands over
one row per call, so the per-row cost decides the speed: psycopg's ``Copy`` iterator spends about
0.6 s of CPU per million rows in its generator machinery, while calling psycopg's libpq binding
directly in blocking mode spends about 0.35 s (measured on pgbench_accounts, 1 M rows). Blocking
is harmless here because each worker is its own process. Rows are gathered into ~1 MiB writes,
so memory per worker stays at about that buffer whatever the table's size.

A whole table of at least :data:`FREEZE_MIN_BYTES` is loaded with ``COPY .. FREEZE`` after a
``TRUNCATE`` in the same transaction: its rows arrive frozen and all-visible, so the index builds
and foreign-key checks that read them next set no hint bits (5-10 % off the primary key build of
4 M rows, measured), and autovacuum later has nothing to freeze. A range of a table cannot
(another range's rows share the table), and where ``TRUNCATE`` is refused the unit falls back to
a plain ``COPY``.

A smaller table is not worth it: on a durable server the ``TRUNCATE`` alone costs 15-35 ms (a new
file, its WAL record and the old file's removal at commit), against about 1 ms for the COPY of
100 rows (measured, 400 tables of 100 rows, PostgreSQL 15, fsync on): with 10,000 tables that was
most of the data phase. Small tables are instead loaded by plain ``COPY`` several to one
transaction (:func:`copy_unit` with ``batched``; the worker commits the batch), which also spares
one commit, a WAL flush, per table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.errors import error_from_result

from rdsmigrate.copy.plan import Unit

WRITE_BYTES = 1 << 20
FREEZE_MIN_BYTES = 4 << 20
"""Whole tables at least this big (on the source's disk) are loaded with TRUNCATE + COPY FREEZE;
smaller ones by plain COPY in batches."""


class Stopped(Exception):
    """The copy was asked to stop (Ctrl-C, another worker failed, or the parent died)."""


def copy_statements(unit: Unit, binary: bool, *, freeze: bool = False) -> tuple[sql.Composed, sql.Composed]:
    table = unit.table
    fmt = sql.SQL(" (FORMAT binary)") if binary else sql.SQL("")
    # A table without columns to copy (none at all, or only generated ones) still has rows, one
    # empty line each; "COPY t ()" is a syntax error, and "COPY t" then means the same thing
    # (generated columns are never part of COPY without a column list).
    columns = (sql.SQL(" ({})").format(table.column_list) if table.copy_columns
               else sql.SQL(""))
    if unit.where is None:
        out = sql.SQL("COPY {}{} TO STDOUT{}").format(table.ident, columns, fmt)
    else:
        # ONLY: an inheritance parent's rows, not its children's (they are units of their own).
        out = sql.SQL("COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT{}").format(
            table.column_list, table.ident, unit.where, fmt)
    options = [sql.SQL("FORMAT binary")] if binary else []
    if freeze:
        options.append(sql.SQL("FREEZE"))
    opts = sql.SQL(" ({})").format(sql.SQL(", ").join(options)) if options else sql.SQL("")
    into = sql.SQL("COPY {}{} FROM STDIN{}").format(table.ident, columns, opts)
    return out, into


def batchable(unit: Unit, freeze_min_bytes: int) -> bool:
    """A whole small table: plain COPY, in a transaction shared with other small tables.

    The threshold is an argument (the parent's :data:`FREEZE_MIN_BYTES`): workers run in a
    forkserver that imported this module on its own."""
    return unit.where is None and unit.table.bytes < freeze_min_bytes


def _begin_frozen_load(tgt: psycopg.Connection[Any], unit: Unit) -> bool:
    """Open the target transaction that empties the table, so the COPY may freeze its rows."""
    if unit.where is not None:
        return False
    pgconn = tgt.pgconn
    if pgconn.exec_(b"BEGIN").status != pq.ExecStatus.COMMAND_OK:
        return False
    truncate = sql.SQL("TRUNCATE ONLY {}").format(unit.table.ident).as_bytes(tgt)
    if pgconn.exec_(truncate).status == pq.ExecStatus.COMMAND_OK:
        return True
    # No TRUNCATE privilege, or (after a resume) a foreign key points at the table.
    pgconn.exec_(b"ROLLBACK")
    return False


def commit(tgt: psycopg.Connection[Any]) -> None:
    """Commit the batch :func:`copy_unit` left open, if any."""
    if tgt.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
        _end_transaction(tgt, commit=True)


def _end_transaction(tgt: psycopg.Connection[Any], commit: bool) -> None:
    result = tgt.pgconn.exec_(b"COMMIT" if commit else b"ROLLBACK")
    if commit and result.status != pq.ExecStatus.COMMAND_OK:
        raise _error(tgt, result)


def _start(conn: psycopg.Connection[Any], statement: sql.Composed, expect: pq.ExecStatus) -> pq.abc.PGconn:
    pgconn = conn.pgconn
    pgconn.send_query(statement.as_bytes(conn))
    result = pgconn.get_result()
    if result is None or result.status != expect:
        _drain(pgconn)
        raise _error(conn, result)
    return pgconn


def _drain(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """Read results until libpq has none left; returns the last one."""
    last = None
    while (result := pgconn.get_result()) is not None:
        last = result
    return last


def _error(conn: psycopg.Connection[Any], result: pq.abc.PGresult | None) -> psycopg.Error:
    if result is None:
        return psycopg.OperationalError(str(conn.pgconn.get_error_message()))
    return error_from_result(result, encoding=conn.info.encoding)


def copy_unit(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], unit: Unit,
              binary: bool, progress: Callable[[int, int], bool], *,
              batched: bool = False) -> int:
    """Copy ``unit`` in one statement on each side; returns the rows the target loaded.

    ``tgt`` is in autocommit mode, so the unit is committed by the time this returns, and a
    failure or a stop rolls it back whole; with ``batched`` the unit joins the target's open
    transaction (begun if there is none) and the caller commits it (:func:`commit`).
    ``progress(rows, nbytes)`` is called after each write; returning False stops the copy.
    """
    if batched:
        if tgt.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            result = tgt.pgconn.exec_(b"BEGIN")
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise _error(tgt, result)
        return _stream(src, tgt, unit, binary, False, progress)
    frozen = _begin_frozen_load(tgt, unit)
    try:
        rows = _stream(src, tgt, unit, binary, frozen, progress)
    except BaseException:
        if frozen and tgt.pgconn.status == pq.ConnStatus.OK:
            _end_transaction(tgt, commit=False)
        raise
    if frozen:
        _end_transaction(tgt, commit=True)
    return rows


def _stream(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], unit: Unit, binary: bool,
            frozen: bool, progress: Callable[[int, int], bool]) -> int:
    out_sql, in_sql = copy_statements(unit, binary, freeze=frozen)
    # If either start fails the worker gives up its sessions, which ends the other side's COPY.
    source = _start(src, out_sql, pq.ExecStatus.COPY_OUT)
    target = _start(tgt, in_sql, pq.ExecStatus.COPY_IN)
    get, put = source.get_copy_data, target.put_copy_data
    buf = bytearray()
    rows = nbytes = 0
    try:
        while True:
            nbytes, data = get(0)
            if nbytes <= 0:
                break
            buf += data
            rows += 1
            if len(buf) >= WRITE_BYTES:
                size = len(buf)
                if put(buf) != 1:
                    raise _error(tgt, _drain(target))
                buf = bytearray()
                if not progress(rows, size):
                    raise Stopped
                rows = 0
    except Stopped:
        target.put_copy_end(b"rdsmigrate stopped this copy")
        _drain(target)
        raise
    src_result = _drain(source)
    if nbytes == -2 or src_result is None or src_result.status != pq.ExecStatus.COMMAND_OK:
        target.put_copy_end(b"the source failed")
        _drain(target)
        raise _error(src, src_result)
    size = len(buf)
    if buf and put(buf) != 1:
        raise _error(tgt, _drain(target))
    target.put_copy_end(None)
    tgt_result = _drain(target)
    if tgt_result is None or tgt_result.status != pq.ExecStatus.COMMAND_OK:
        raise _error(tgt, tgt_result)
    progress(rows, size)
    return int(tgt_result.command_tuples or 0)
