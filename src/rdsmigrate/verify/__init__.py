"""``rdsmigrate verify``: prove that source and target hold the same rows, without moving them.

Both servers compute, in parallel, a row count and a checksum of every table, first in one pass
over the whole table (unless it is too big for one worker), then, for a table that differs, for
each key-range chunk (see :mod:`rdsmigrate.verify.chunks`, and :mod:`rdsmigrate.verify.rowhash`
for the row hash it sums: ``hash_record_extended`` when both servers provably agree on it, else
md5); only those pairs of numbers cross the network, and a difference is located to the chunk's
key range. Tables
missing on either side, sequences and large objects are compared too. Each side reads one
snapshot, with its text output pinned, so equal data compares equal even across major versions.

What it guarantees: equal counts and equal sums of 64-bit row hashes in every chunk, which for
different data would take a collision of row hashes or a sum of them cancelling out (odds of about
2^-64 per chunk). The report says which row hash was used and, for md5, why. What it does not
compare: indexes, constraints, grants, comments, or rows of views and materialized views (derived
data: equal tables give equal views once refreshed).

When a text or composite key sorts differently on the two servers (another collation or glibc
version), the source's boundaries are out of order on the target and its chunks overlap or leave
gaps there, so chunks differ although the rows do not. A table whose sampled-key chunks differ is
therefore checksummed once more as a whole on both sides: if that agrees, the rows are the same and
the report carries a note instead of a difference.

Measured with the md5 row hash on a 2-core machine running both servers (PostgreSQL 15, 4 M
rows, 491 MB of heap): 70 MB/s of source data with ``--jobs 2`` and the default 100,000-row
chunks; 46 MB/s with one job, 60 MB/s with four (the cores are shared), 48 MB/s with 20,000-row
chunks. With the JIT on, 7% slower in that run and no faster in a repeat on a busier machine: it
buys nothing here. With ``hash_record_extended`` and whole-table first passes, the benchmark
(scale 40: 1103 MB, 6 M rows, ``--jobs 2``, same machine) verifies in 2.3 s, about 480 MB/s of
database size, where the md5 chunks took 11.6 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db import catalog, selection
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.progress import Reporter, Task
from rdsmigrate.settings import VerifyOptions
from rdsmigrate.verify import objects, rowhash
from rdsmigrate.verify.chunks import Chunk, checksum_query, plan, run_checksum
from rdsmigrate.verify.report import (
    Difference,
    LargeObjectResult,
    SequenceResult,
    TableResult,
    VerifyReport,
)
from rdsmigrate.verify.session import Side

__all__ = ["Difference", "LargeObjectResult", "SequenceResult", "TableResult", "VerifyReport", "run"]

Sums = tuple[int, str]


def run(source: Endpoint, target: Endpoint, options: VerifyOptions,
        reporter: Reporter) -> VerifyReport:
    """Compare every selected table, sequence and large object of ``source`` and ``target``."""
    started = time.monotonic()
    sel = options.selection
    with Side(source, options.jobs) as src, Side(target, options.jobs) as tgt:
        notes = [f"{side.endpoint.role}: could not export a snapshot ({side.snapshot_problem}); "
                 "each worker read its own, so only a database nobody writes to verifies cleanly"
                 for side in (src, tgt) if side.snapshot_problem]
        lo_src = src.submit(objects.large_object_digests, "large objects")
        lo_tgt = tgt.submit(objects.large_object_digests, "large objects")
        # Resolved on the source, as the copy did; the target is then read by the same names.
        selected = selection.resolve(src.conn, sel)
        src_tables = {t.qualified: t for t in selected.tables}
        tgt_tables = {t.qualified: t for t in selected.tables_of(tgt.conn)}
        differences = _unmatched(src_tables, tgt_tables)
        with src.reading("sequences"), tgt.reading("sequences"):
            sequences, seq_diffs = objects.compare_sequences(
                objects.sequence_states(src.conn, selected),
                objects.sequence_states(tgt.conn, selected))
        checksum = rowhash.choose(src, tgt, options.checksum)
        pairs = [(src_tables[n], tgt_tables[n]) for n in src_tables.keys() & tgt_tables.keys()]
        # Largest first, so the long tables start while small ones fill the gaps.
        pairs.sort(key=lambda p: (-p[0].bytes, p[0].qualified))
        differences.extend(d for s, t in pairs for d in _column_differences(s, t))
        comparisons = _compare_tables(src, tgt, pairs, checksum, options.chunk_rows,
                                      options.jobs, reporter)
        lo_result, lo_diffs = objects.compare_large_objects(lo_src.result(), lo_tgt.result(),
                                                             roles=options.roles)
    tables = sorted((c.result() for c in comparisons), key=lambda r: r.table)
    differences.extend(d for c in comparisons for d in c.differences())
    notes.extend(n for c in comparisons if (n := c.note()))
    differences.extend(seq_diffs)
    differences.extend(lo_diffs)
    return VerifyReport(
        identical=not differences, source=source.describe(), target=target.describe(),
        tables=tables, sequences=sequences, large_objects=lo_result, differences=differences,
        notes=notes, excluded=selected.excluded_names, checksum=checksum.method, checksum_reason=checksum.reason,
        rows=sum(r.source_rows for r in tables), bytes=sum(r.bytes for r in tables),
        seconds=round(time.monotonic() - started, 3),
    )


def _names(table: catalog.Table) -> set[str]:
    return {c.name for c in table.columns}


def _unmatched(src: dict[str, catalog.Table], tgt: dict[str, catalog.Table]) -> list[Difference]:
    out = [Difference(kind="missing_table", object=name, range="whole table",
                      detail="table is missing on the target")
           for name in sorted(src.keys() - tgt.keys())]
    out.extend(Difference(kind="extra_table", object=name, range="whole table",
                          detail="table exists only on the target")
               for name in sorted(tgt.keys() - src.keys()))
    return out


def _column_differences(source: catalog.Table, target: catalog.Table) -> list[Difference]:
    missing = [c.name for c in source.columns if c.name not in _names(target)]
    extra = [c.name for c in target.columns if c.name not in _names(source)]
    if not (missing or extra):
        return []
    return [Difference(kind="columns", object=source.qualified,
                       detail=f"columns missing on the target: {missing or 'none'}; only on the "
                              f"target: {extra or 'none'}; rows compared on the others")]


@dataclass
class _Comparison:
    """One table's chunks and the sums both sides computed for them."""

    source: catalog.Table
    row_hash: sql.Composable
    """The same expression on both sides, over the columns both have (see rowhash)."""
    chunks: list[Chunk]
    src: list[Sums | None]
    tgt: list[Sums | None]
    pending: int
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    task: Task | None = None
    whole: tuple[Sums, Sums] | None = None
    """Whole-table sums of both sides: the first pass of a table checked whole, or the check of a
    table whose sampled-key chunks differ."""

    def differing(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.src, self.tgt, strict=True)) if a != b]

    def rows(self, sums: list[Sums | None]) -> int:
        return sum(s[0] for s in sums if s is not None)

    def needs_whole_check(self) -> bool:
        return (self.whole is None and len(self.chunks) > 1 and self.source.integer_key is None
                and bool(self.differing()))

    def needs_chunks(self) -> bool:
        """Checked whole and found different: its key ranges say where."""
        return self.chunks == [WHOLE] and bool(self.source.key) and bool(self.differing())

    def only_order_differs(self) -> bool:
        """Chunks disagree but the table as a whole does not: the sides sort keys differently."""
        return self.whole is not None and self.whole[0] == self.whole[1]

    def whole_differs_only(self) -> bool:
        """The table differs as a whole but no key range does: the sides sort keys differently
        and the ranges overlap or leave gaps; the difference can only be named for the table."""
        return self.whole is not None and self.whole[0] != self.whole[1] and not self.differing()

    def result(self) -> TableResult:
        src_rows, tgt_rows = ((self.whole[0][0], self.whole[1][0]) if self.whole is not None
                              else (self.rows(self.src), self.rows(self.tgt)))
        return TableResult(
            table=self.source.qualified, key=list(self.source.key), chunks=len(self.chunks),
            source_rows=src_rows, target_rows=tgt_rows,
            bytes=self.source.bytes,
            identical=(not self.differing() and not self.whole_differs_only())
            or self.only_order_differs(),
            seconds=round(max(self.finished - self.started, 0.0), 3),
        )

    def differences(self) -> list[Difference]:
        if self.only_order_differs():
            return []
        if self.whole is not None and self.whole_differs_only():
            (src_rows, _), (tgt_rows, _) = self.whole
            return [Difference(kind="rows", object=self.source.qualified, range=WHOLE.label,
                               source_rows=src_rows, target_rows=tgt_rows,
                               detail="counts differ" if src_rows != tgt_rows
                               else "same count, contents differ")]
        out = []
        for i in self.differing():
            src, tgt = self.src[i], self.tgt[i]
            assert src is not None and tgt is not None
            detail = "counts differ" if src[0] != tgt[0] else "same count, contents differ"
            out.append(Difference(kind="rows", object=self.source.qualified,
                                  range=self.chunks[i].label, source_rows=src[0],
                                  target_rows=tgt[0], detail=detail))
        return out

    def note(self) -> str | None:
        if not self.only_order_differs():
            return None
        return (f"{self.source.qualified}: key ranges hold different rows on each side but the "
                "whole table's rows are identical: the servers sort its key differently "
                "(collation)")


WHOLE = Chunk(None, None, "whole table")
# A table of more than this many workers' shares of the data is checksummed by key ranges from
# the start, so that several workers share it; a smaller one is first checksummed whole.
CHUNK_ABOVE_SHARES = 1.5


def _compare_tables(src: Side, tgt: Side, pairs: list[tuple[catalog.Table, catalog.Table]],
                    checksum: rowhash.Checksum, chunk_rows: int, jobs: int,
                    reporter: Reporter) -> list[_Comparison]:
    """Checksum every table on both sides, then locate the differences of those that differ.

    A table is first checksummed whole, one sequential scan on each side, unless it is so big
    that workers must share it. Measured on the benchmark's 6 M rows (2 jobs, both servers on 2
    cores): 3.2 s with every table cut into 100,000-row key ranges, whose index range scans cost
    15-20 % more than a sequential scan, against a single pass over identical tables. Only a
    table whose sums differ is then cut into key ranges, to say where the difference lies.
    """
    if not pairs:
        return []
    share = sum(s.bytes for s, _ in pairs) / max(jobs, 1)
    planned = {s.qualified: src.submit(_planner(s, chunk_rows), s.qualified) for s, _ in pairs
               if s.key and s.bytes > CHUNK_ABOVE_SHARES * share}
    comparisons: list[_Comparison] = []
    lock = threading.Lock()
    with reporter.transfer("verify", sum(s.bytes for s, _ in pairs)):
        futures: list[Future[None]] = []
        for s, t in pairs:
            chunks = planned[s.qualified].result() if s.qualified in planned else [WHOLE]
            # As text: 10,000 tables' composed expressions held 20 MiB until the end.
            cmp = _Comparison(s, sql.SQL(checksum.row_hash(s, t).as_string(src.conn)),
                              [], [], [], 0)
            comparisons.append(cmp)
            futures.extend(_submit_chunks(src, tgt, cmp, chunks, reporter, lock))
        for fut in futures:
            fut.result()
        drill = [c for c in comparisons if c.needs_chunks()]
        plans = [src.submit(_planner(c.source, chunk_rows), c.source.qualified) for c in drill]
        futures = []
        for cmp, plan_of in zip(drill, plans, strict=True):
            whole_src, whole_tgt = cmp.src[0], cmp.tgt[0]
            assert whole_src is not None and whole_tgt is not None
            cmp.whole, cmp.task = (whole_src, whole_tgt), None
            futures.extend(_submit_chunks(src, tgt, cmp, plan_of.result(), reporter, lock))
        for fut in futures:
            fut.result()
    _check_whole(src, tgt, [c for c in comparisons if c.needs_whole_check()])
    return comparisons


def _submit_chunks(src: Side, tgt: Side, cmp: _Comparison, chunks: list[Chunk],
                   reporter: Reporter, lock: threading.Lock) -> list[Future[None]]:
    n = len(chunks)
    cmp.chunks, cmp.src, cmp.tgt, cmp.pending = chunks, [None] * n, [None] * n, 2 * n
    futures = []
    for i, chunk in enumerate(chunks):
        for side, into in ((src, cmp.src), (tgt, cmp.tgt)):
            job = _recorded(chunk, cmp, i, into, side is src, reporter, lock)
            futures.append(side.submit(job, cmp.source.qualified))
    return futures


def _check_whole(src: Side, tgt: Side, comparisons: list[_Comparison]) -> None:
    """Checksum as a whole, on both sides, the tables whose sampled-key chunks differ."""
    pending: list[tuple[_Comparison, Future[Sums], Future[Sums]]] = []
    for cmp in comparisons:
        query, params = checksum_query(cmp.source, cmp.row_hash, WHOLE)
        job = _checksummer(query, params)
        name = cmp.source.qualified
        pending.append((cmp, src.submit(job, name), tgt.submit(job, name)))
    for cmp, on_src, on_tgt in pending:
        cmp.whole = (on_src.result(), on_tgt.result())


def _planner(table: catalog.Table, chunk_rows: int) -> Callable[[psycopg.Connection[Any]], list[Chunk]]:
    return lambda conn: plan(conn, table, chunk_rows)


def _checksummer(query: sql.Composed, params: list[Any]) -> Callable[[psycopg.Connection[Any]], Sums]:
    return lambda conn: run_checksum(conn, query, params)


def _recorded(chunk: Chunk, cmp: _Comparison, index: int, into: list[Sums | None],
              is_source: bool, reporter: Reporter,
              lock: threading.Lock) -> Callable[[psycopg.Connection[Any]], None]:
    """Run one side's checksum of one chunk and account for it in the table's progress.

    The query is composed when the job runs, not when it is queued: every table's jobs are
    queued at once, and 20,000 composed queries waiting were 30 MiB at 10,000 tables."""
    def recorded(conn: psycopg.Connection[Any]) -> None:
        query, params = checksum_query(cmp.source, cmp.row_hash, chunk)
        with lock:
            if cmp.task is None:
                cmp.started = time.monotonic()
                cmp.task = reporter.task(cmp.source.qualified, cmp.source.bytes)
            task = cmp.task
        sums = run_checksum(conn, query, params)
        with lock:
            into[index] = sums
            cmp.pending -= 1
            finished = cmp.pending == 0
        if is_source:
            task.advance(rows=sums[0], nbytes=cmp.source.bytes // len(cmp.chunks))
        if finished:
            cmp.finished = time.monotonic()
            task.done()
    return recorded
