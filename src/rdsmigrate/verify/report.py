"""What ``verify`` found, as typed results: rendered for people, dumped as JSON for machines.

Endpoints appear only as ``user@host:port/db``; no password is ever part of a result.
"""

from __future__ import annotations

from pydantic import BaseModel
from rich import box
from rich.table import Table as RichTable

from rdsmigrate.progress import Reporter

# Differing ranges shown per table for people; JSON always carries all of them.
SHOWN_PER_TABLE = 10


class Difference(BaseModel):
    """One thing that is not the same; ``range`` locates rows, ``detail`` says what differs."""

    kind: str
    """rows, missing_table, extra_table, columns, sequence, missing_sequence, extra_sequence,
    missing_large_object, extra_large_object, large_object."""
    object: str
    range: str | None = None
    source_rows: int | None = None
    target_rows: int | None = None
    detail: str = ""


class TableResult(BaseModel):
    table: str
    key: list[str]
    chunks: int
    source_rows: int
    target_rows: int
    bytes: int
    """Source heap size, for throughput."""
    identical: bool
    seconds: float


class SequenceResult(BaseModel):
    name: str
    source_last_value: int | None
    source_is_called: bool | None
    target_last_value: int | None
    target_is_called: bool | None
    identical: bool


class LargeObjectResult(BaseModel):
    source_count: int
    target_count: int
    missing: list[int]
    extra: list[int]
    changed: list[int]
    identical: bool


class VerifyReport(BaseModel):
    identical: bool
    source: str
    target: str
    tables: list[TableResult]
    sequences: list[SequenceResult]
    large_objects: LargeObjectResult
    differences: list[Difference]
    notes: list[str]
    rows: int
    bytes: int
    seconds: float

    def render(self, reporter: Reporter) -> None:
        if reporter.quiet:
            return
        for note in self.notes:
            reporter.warn(note)
        if self.identical:
            reporter.info(
                f"verified identical: {len(self.tables)} tables, {self.rows:,} rows, "
                f"{len(self.sequences)} sequences, {self.large_objects.source_count} large objects "
                f"in {self.seconds:.1f} s"
            )
            return
        shown: dict[str, int] = {}
        view = RichTable("object", "where", "source", "target", "detail", box=box.SIMPLE)
        hidden = 0
        for d in self.differences:
            shown[d.object] = shown.get(d.object, 0) + 1
            if shown[d.object] > SHOWN_PER_TABLE:
                hidden += 1
                continue
            view.add_row(d.object, d.range or "", _rows(d.source_rows), _rows(d.target_rows),
                         d.detail or d.kind)
        reporter.console.print(view)
        if hidden:
            reporter.info(f"... and {hidden} more differing ranges (--json lists all)")
        objects = len({d.object for d in self.differences})
        reporter.info(
            f"DIFFERENCES: {len(self.differences)} in {objects} objects "
            f"({len(self.tables)} tables, {self.rows:,} source rows compared in {self.seconds:.1f} s)"
        )


def _rows(n: int | None) -> str:
    return "" if n is None else f"{n:,} rows"
