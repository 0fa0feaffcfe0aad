"""Key-range chunks of a table and the checksum each server computes over one chunk.

A chunk's checksum is ``count(*)`` and the sum, as numeric, of a 64-bit hash of each row. A sum
does not depend on the order rows are read in, so no server sorts anything, and unlike XOR it
counts a duplicated row twice. Which hash (``hash_record_extended`` over the row's values, or the
md5 of its text when the servers cannot agree on the first) and what each kind of column compares
by is decided once per run, in :mod:`rdsmigrate.verify.rowhash`; this module only sums it.

Chunks partition each side's table: ranges are half-open and the first and last are open-ended,
so rows the target holds outside the source's key range (beyond its max, or with a NULL key where
the target lost a NOT NULL constraint) still land in some chunk and show up as a difference.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db.catalog import Table

Bound = tuple[Any, ...]


@dataclass(frozen=True)
class Chunk:
    """Rows whose key is ``>= lower`` and ``< upper``; None is unbounded on that side."""

    lower: Bound | None
    upper: Bound | None
    label: str


def plan(conn: psycopg.Connection[Any], table: Table, chunk_rows: int) -> list[Chunk]:
    """Cut the source's table into chunks of about ``chunk_rows`` rows each."""
    if not table.key:
        return [Chunk(None, None, "whole table")]
    if table.integer_key is not None:
        return _integer_chunks(conn, table, table.integer_key, chunk_rows)
    return _sampled_chunks(conn, table, chunk_rows)


def _integer_chunks(conn: psycopg.Connection[Any], table: Table, key: str,
                    chunk_rows: int) -> list[Chunk]:
    col = sql.Identifier(key)
    row = conn.execute(
        sql.SQL("SELECT min({c}), max({c}) FROM ONLY {t}").format(c=col, t=table.ident)
    ).fetchone()
    assert row is not None
    low, high = row
    if low is None:
        return [Chunk(None, None, "whole table")]
    rows = table.est_rows
    if rows <= 0:
        # Never analyzed: the planner's estimate is missing, and chunks sized from the key span
        # alone would be millions of empty queries on a sparse key. One count is cheaper.
        counted = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(table.ident)).fetchone()
        rows = int(counted[0]) if counted else 0
    span = int(high) - int(low) + 1
    # Width in key units so that a chunk holds about chunk_rows rows even when keys are sparse.
    width = max(chunk_rows, math.ceil(chunk_rows * span / max(rows, 1)))
    edges = list(range(int(low) + width, int(high) + 1, width))
    return _chunks_from_edges(key, [(e,) for e in edges], quote=False)


def _sampled_chunks(conn: psycopg.Connection[Any], table: Table, chunk_rows: int) -> list[Chunk]:
    """Boundaries for text, uuid or composite keys: every ``chunk_rows``-th key in key order.

    Read as text and sent back as untyped literals, so each side parses them into the key's own
    type (uuid, date, enum, a composite's parts) exactly.
    """
    cols = [sql.Identifier(k) for k in table.key]
    as_text = sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in cols)
    order = sql.SQL(", ").join(cols)
    rows = conn.execute(
        sql.SQL(
            "SELECT {as_text} FROM (SELECT {order}, row_number() OVER (ORDER BY {order}) AS rn"
            " FROM ONLY {t}) s WHERE rn > 1 AND (rn - 1) %% %s = 0 ORDER BY rn"
        ).format(as_text=as_text, order=order, t=table.ident),
        [chunk_rows],
    ).fetchall()
    return _chunks_from_edges(_key_label(table.key), [tuple(r) for r in rows], quote=True)


def _key_label(key: tuple[str, ...]) -> str:
    return key[0] if len(key) == 1 else f"({', '.join(key)})"


def _chunks_from_edges(key: str, edges: list[Bound], *, quote: bool) -> list[Chunk]:
    if not edges:
        return [Chunk(None, None, "whole table")]

    def show(bound: Bound) -> str:
        parts = [f"'{v}'" if quote else str(v) for v in bound]
        return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"

    chunks = [Chunk(None, edges[0], f"{key} < {show(edges[0])}")]
    for lower, upper in itertools.pairwise(edges):
        chunks.append(Chunk(lower, upper, f"{key} >= {show(lower)} and < {show(upper)}"))
    chunks.append(Chunk(edges[-1], None, f"{key} >= {show(edges[-1])}"))
    return chunks


def checksum_query(table: Table, row_hash: sql.Composable,
                   chunk: Chunk) -> tuple[sql.Composed, list[Any]]:
    """``SELECT count, sum`` over one chunk; the same text on both sides but for the table.

    ``row_hash`` is an int8 expression over the row ``t``, from :mod:`rdsmigrate.verify.rowhash`.
    """
    where, params = _predicate(table.key, chunk)
    query = sql.SQL(
        "SELECT count(*), coalesce(sum({row_hash}), 0)::text FROM ONLY {t} AS t WHERE {where}"
    ).format(row_hash=row_hash, t=table.ident, where=where)
    return query, params


def _predicate(key: tuple[str, ...], chunk: Chunk) -> tuple[sql.Composable, list[Any]]:
    if chunk.lower is None and chunk.upper is None:
        return sql.SQL("true"), []
    cols = sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier("t", k) for k in key))
    marks = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(key)))
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if chunk.lower is not None:
        parts.append(sql.SQL("{} >= {}").format(cols, marks))
        params.extend(chunk.lower)
    if chunk.upper is not None:
        parts.append(sql.SQL("{} < {}").format(cols, marks))
        params.extend(chunk.upper)
    where: sql.Composable = sql.SQL(" AND ").join(parts)
    if chunk.lower is None:
        # A NULL key compares to nothing; the first chunk takes such rows so none escapes.
        nulls = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier("t", k)) for k in key)
        where = sql.SQL("({}) OR {}").format(where, nulls)
    return where, params


def run_checksum(conn: psycopg.Connection[Any], query: sql.Composed,
                 params: list[Any]) -> tuple[int, str]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])
