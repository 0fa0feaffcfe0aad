"""Dividing the copy into units of work: biggest table first, only the biggest split into ranges.

A table too big for one worker (see below) is cut into ranges so that several workers can
share it: ``ctid`` page ranges (a TID range scan each, PostgreSQL 14 and newer), else
integer-key ranges when the table has a single integer key (an index range scan each). The
first and last range are open-ended, so rows beyond the sampled bounds are never lost, and every
boundary belongs to exactly one range, so none is copied twice.

Splitting has a price, so it is kept to what balance needs. A range is read by
``COPY (SELECT ..)``, whose executor costs about 30 % more source CPU than ``COPY table``
(pgbench_accounts, 4 M rows: 1.0-1.2 s whole, 1.35-1.55 s as four ctid ranges; key ranges
another 10 % on top), and only a whole table can be loaded with ``FREEZE``. Workers left idle
at the end are not wasted: the finished tables' index builds run on their cores. So a table is
split only when it holds more than one and a half workers' shares: the benchmark's 512 MB table
beside a 300 MB one (2 jobs, 1.26 shares) copied in 6.0-6.4 s whole and 6.9 s as two ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db.catalog import Table

TID_RANGE_SCAN_MAJOR = 14
# Below this a range costs more in per-statement overhead than it gains in balance.
MIN_SPLIT_BYTES = 16 * 1024 * 1024
# A table is split automatically once it holds this many workers' shares of the copy.
SPLIT_ABOVE_SHARES = 1.5


@dataclass(frozen=True, slots=True)
class Unit:
    table: Table
    index: int
    of: int
    where: sql.Composable | None
    """Row filter of this range; None copies the whole table with ``COPY table TO``."""
    label: str
    est_bytes: int

    @property
    def name(self) -> str:
        return self.table.qualified if self.of == 1 else f"{self.table.qualified} [{self.index + 1}/{self.of}]"


def plan(conn: psycopg.Connection[Any], tables: list[Table], *, jobs: int,
         split_bytes: int | None, source_major: int) -> list[Unit]:
    """Units for ``tables``, biggest table first with its ranges together; ``conn`` must see the
    copy's snapshot.

    ``split_bytes`` None splits only a table of more than :data:`SPLIT_ABOVE_SHARES` workers'
    shares of the total, into as many ranges as it holds shares (rounded up); a number splits
    every table bigger than that into ranges of at most that size. Biggest first, so the longest
    index builds start early and the copy ends on small tables whose indexes take no time.
    """
    units: list[Unit] = []
    share = max(sum(t.bytes for t in tables) // max(jobs, 1), MIN_SPLIT_BYTES)
    limit, above = ((share, share * SPLIT_ABOVE_SHARES) if split_bytes is None
                    else (split_bytes, split_bytes))
    for table in tables:
        pieces = math.ceil(table.bytes / limit) if jobs > 1 and table.bytes > above else 1
        if pieces <= 1:
            units.append(Unit(table, 0, 1, None, "whole table", table.bytes))
            continue
        ranges = (_ctid_ranges(conn, table, pieces) if source_major >= TID_RANGE_SCAN_MAJOR
                  else _key_ranges(conn, table, pieces) if table.integer_key
                  else None)
        if not ranges:
            units.append(Unit(table, 0, 1, None, "whole table", table.bytes))
            continue
        share = table.bytes // len(ranges)
        units.extend(Unit(table, i, len(ranges), where, label, share)
                     for i, (where, label) in enumerate(ranges))
    units.sort(key=lambda u: (-u.table.bytes, u.table.qualified, u.index))
    return units


def _bounded(column: sql.Composable, bounds: list[Any], cast: str, render: Any) -> list[tuple[sql.Composable, str]]:
    """Half-open ranges between consecutive ``bounds``; the outermost two are open-ended."""
    out: list[tuple[sql.Composable, str]] = []
    n = len(bounds) + 1
    for i in range(n):
        parts: list[sql.Composable] = []
        label: list[str] = []
        if i > 0:
            parts.append(sql.SQL("{} >= {}::" + cast).format(column, sql.Literal(render(bounds[i - 1]))))
            label.append(f">= {render(bounds[i - 1])}")
        if i < n - 1:
            parts.append(sql.SQL("{} < {}::" + cast).format(column, sql.Literal(render(bounds[i]))))
            label.append(f"< {render(bounds[i])}")
        out.append((sql.SQL(" AND ").join(parts), " and ".join(label)))
    return out


def _key_ranges(conn: psycopg.Connection[Any], table: Table, pieces: int) -> list[tuple[sql.Composable, str]] | None:
    key = table.integer_key
    assert key is not None
    row = conn.execute(sql.SQL("SELECT min({k}), max({k}) FROM ONLY {t}").format(
        k=sql.Identifier(key), t=table.ident)).fetchone()
    if row is None or row[0] is None or row[1] == row[0]:
        return None
    low, high = int(row[0]), int(row[1])
    step = max((high - low) // pieces, 1)
    bounds = sorted({low + step * i for i in range(1, pieces)} - {low})
    if not bounds:
        return None
    ranges = _bounded(sql.Identifier(key), bounds, "bigint", str)
    return [(where, f"{key} {label}") for where, label in ranges]


def _ctid_ranges(conn: psycopg.Connection[Any], table: Table, pieces: int) -> list[tuple[sql.Composable, str]] | None:
    row = conn.execute(
        "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int", [table.oid]
    ).fetchone()
    pages = int(row[0]) if row else 0
    if pages < pieces:
        return None
    step = pages // pieces
    bounds = [step * i for i in range(1, pieces)]
    ranges = _bounded(sql.SQL("ctid"), bounds, "tid", lambda page: f"({page},0)")
    return [(where, f"ctid {label}") for where, label in ranges]
