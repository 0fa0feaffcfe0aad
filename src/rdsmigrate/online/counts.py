"""The cutover's count check, with most of the counting done before the freeze.

The guarantee is unchanged: when the cutover drops the subscription, every selected table has the
same exact ``count(*)`` on the target as on the frozen source. What changes is when the counting
happens. Counting 6 M rows on both sides took 0.9 s of a 1.5 s write downtime; yet under a
typical load most tables do not change their row count during the last seconds, and an
``UPDATE`` never changes a count.

1. **Baseline, while the source still takes writes** (no downtime): read a change marker of every
   table on both sides, take the source's WAL insert position ``L``, count every table on the
   source, wait until the target has confirmed ``L``, then count every table on the target. Both
   sides count in ``jobs`` parallel sessions.
2. **At the freeze**, after the catch-up: read the markers again. A table whose marker is the same
   on both sides as at the baseline had no row inserted or deleted since, so its baseline counts
   are its final counts. Every other table is counted again, on both sides, in parallel sessions.

The marker is ``(pg_relation_filenode, n_tup_ins, n_tup_del)`` from the cumulative statistics:
every heap insert and delete counts (``COPY``, cross-partition updates, aborted inserts too, which
only cause a needless recount), and a ``TRUNCATE``, which the statistics do not count, gets a new
filenode. Why the markers are trustworthy at the freeze on the source: since PostgreSQL 15 the
statistics live in shared memory (nothing is dropped, unlike the UDP collector before 15), a
backend hands its counts over when its transaction has ended (after its commit is visible), and
the freeze ends every client session that began before it and waits until it is gone, which is
after its last counts were flushed. So a change committed after the baseline read its markers
always shows. The baseline is not used (every table is counted during the freeze, as before) when
the source runs PostgreSQL 14 or older, when ``track_counts`` is off on either side, or when the
target could not confirm ``L`` in time.

What it does not see: a write made on the *target* by another session within the second before
the freeze whose statistics that session has not yet flushed (the target's marker is only a
second guard; the target is meant to have no writer but the subscription until the cutover).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError
from rdsmigrate.online.status import DRIFT_FIX

Marker = tuple[int, int, int]
"""(filenode, n_tup_ins, n_tup_del); a table the statistics have no entry for yet reads 0."""

# The statistics functions directly, not pg_stat_all_tables: the view computes its row for every
# relation of the database before the join (0.24 s against 0.06 s at 10,050 tables).
_MARKERS_SQL = """
SELECT n.nspname, c.relname, coalesce(pg_relation_filenode(c.oid), -1)::int8,
       pg_stat_get_tuples_inserted(c.oid)::int8, pg_stat_get_tuples_deleted(c.oid)::int8
  FROM unnest(%s::text[], %s::text[]) AS u(nspname, relname)
  JOIN pg_namespace n ON n.nspname = u.nspname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.relname
"""

FIRST_MAJOR = 15
"""Statistics in shared memory, never dropped: the first major whose markers can be trusted."""
CONFIRM_WAIT_S = 5.0
"""How long the baseline waits for the target to confirm the source's position. The cutover has
already refused a lag above --max-lag, so a healthy target confirms within a second; one that
does not is stuck (a lock, a conflict), and the freeze then counts every table itself."""


@dataclass(frozen=True)
class Baseline:
    """Counts of every table on both sides and the markers they were taken under."""

    source_markers: dict[str, Marker]
    target_markers: dict[str, Marker]
    source_counts: dict[str, int]
    target_counts: dict[str, int]
    seconds: float


@dataclass(frozen=True)
class Checked:
    tables: int
    rows: int
    recounted: int
    """Tables counted again during the freeze (all of them without a baseline)."""


def _markers(conn: psycopg.Connection[Any], tables: Sequence[catalog.Table]) -> dict[str, Marker]:
    rows = conn.execute(_MARKERS_SQL, [[t.schema for t in tables], [t.name for t in tables]])
    return {f"{r[0]}.{r[1]}": (int(r[2]), int(r[3]), int(r[4])) for r in rows.fetchall()}


def _trusted(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT current_setting('server_version_num')::int, "
                       "current_setting('track_counts')::bool").fetchone()
    return bool(row and row[0] >= FIRST_MAJOR * 10000 and row[1])


def count(ep: Endpoint, tables: Sequence[catalog.Table], jobs: int) -> dict[str, int]:
    """Exact ``count(*)`` of each table (``ONLY``), in up to ``jobs`` sessions; the biggest
    tables are dealt out first so the sessions finish together."""
    if not tables:
        return {}
    queue = sorted(tables, key=lambda t: t.bytes, reverse=True)
    shares: list[list[catalog.Table]] = [[] for _ in range(max(1, min(jobs, len(queue))))]
    loads = [0] * len(shares)
    for table in queue:
        i = loads.index(min(loads))
        shares[i].append(table)
        loads[i] += max(table.bytes, 1)

    def one(share: list[catalog.Table]) -> dict[str, int]:
        with connect(ep, autocommit=True) as conn:
            out = {}
            for t in share:
                row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(t.ident)
                                   ).fetchone()
                out[t.qualified] = int(row[0]) if row else 0
            return out

    counts: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        for part in pool.map(one, shares):
            counts.update(part)
    return counts


def baseline(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
             tgt: psycopg.Connection[Any], slot: str, tables: Sequence[catalog.Table],
             jobs: int, timeout_s: float, confirm_wait_s: float = CONFIRM_WAIT_S
             ) -> Baseline | None:
    """Step 1 above, before the freeze; None when the markers cannot be trusted here or the
    target does not confirm the source's position within ``confirm_wait_s``."""
    if not tables or not _trusted(src) or not _trusted(tgt):
        return None
    started = time.monotonic()
    source_markers = _markers(src, tables)
    target_markers = _markers(tgt, tables)
    row = src.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    lsn = str(row[0])
    source_counts = count(source, tables, jobs)
    deadline = time.monotonic() + min(timeout_s, confirm_wait_s)
    while True:
        row = src.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                          "WHERE slot_name = %s", [lsn, slot]).fetchone()
        if row is None:
            raise UserError(f"the replication slot {slot} disappeared from the source")
        if row[0]:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    target_counts = count(target, tables, jobs)
    return Baseline(source_markers, target_markers, source_counts, target_counts,
                    round(time.monotonic() - started, 3))


def check_frozen(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
                 tgt: psycopg.Connection[Any], tables: Sequence[catalog.Table],
                 base: Baseline | None, jobs: int) -> Checked:
    """Step 2 above, with the source frozen and the target caught up; raises UserError naming
    every table whose counts differ."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        now_src, now_tgt = pool.map(lambda conn: _markers(conn, tables), (src, tgt))
    missing = [t.qualified for t in tables if t.qualified not in now_tgt]
    if missing:
        raise UserError(f"tables of the source are missing on the target: {', '.join(missing[:10])}"
                        f"{f' (+{len(missing) - 10} more)' if len(missing) > 10 else ''}; "
                        "logical replication carries no DDL: " + DRIFT_FIX)
    if base is None:
        stale = list(tables)
    else:
        stale = [t for t in tables
                 if now_src.get(t.qualified) != base.source_markers.get(t.qualified)
                 or now_tgt.get(t.qualified) != base.target_markers.get(t.qualified)]
    # Both sides count at once: the downtime is the slower side's time, not the sum.
    with ThreadPoolExecutor(max_workers=2) as pool:
        src_fresh, tgt_fresh = pool.map(lambda ep: count(ep, stale, jobs), (source, target))
    src_counts = {**(base.source_counts if base else {}), **src_fresh}
    tgt_counts = {**(base.target_counts if base else {}), **tgt_fresh}
    differing = [f"{t.qualified} (source {src_counts[t.qualified]:,}, target "
                 f"{tgt_counts[t.qualified]:,})" for t in tables
                 if src_counts[t.qualified] != tgt_counts[t.qualified]]
    if differing:
        raise UserError("row counts differ after the target caught up: "
                        + ", ".join(differing[:10]))
    return Checked(tables=len(tables), rows=sum(src_counts[t.qualified] for t in tables),
                   recounted=len(stale))
