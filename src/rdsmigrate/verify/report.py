"""What ``verify`` found, as typed results: rendered for people, dumped as JSON for machines.

Endpoints appear only as ``user@host:port/db``; no password is ever part of a result.
"""

from __future__ import annotations

from pydantic import BaseModel

from rdsmigrate.progress import Reporter

# Differing ranges shown per table for people; JSON always carries all of them.
SHOWN_PER_TABLE = 10


class Difference(BaseModel):
    """One thing that is not the same; ``range`` locates rows, ``detail`` says what differs."""

    kind: str
    """rows, missing_table, extra_table, columns, sequence, missing_sequence, extra_sequence,
    missing_large_object, extra_large_object, large_object, large_object_comment,
    large_object_owner, large_object_acl."""
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
    comment_differs: list[int] = []
    owner_differs: list[int] = []
    """Compared with ``--roles`` only, as are the grants."""
    acl_differs: list[int] = []
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
    excluded: list[str] = []
    """``schema.name`` of each source table ``--exclude-table`` left out of the comparison."""
    checksum: str
    """The row hash both servers summed: hash_record_extended, or md5 (slower, any servers)."""
    checksum_reason: str | None = None
    """Why md5, when it is md5."""
    rows: int
    bytes: int
    seconds: float

    def render(self, reporter: Reporter) -> None:
        """The verdict, shown even with ``--quiet`` (which silences progress only)."""
        def say(text: str) -> None:
            reporter.console.print(text, markup=False)

        for note in self.notes:
            say(f"note: {note}")
        if self.excluded:
            say(f"left out (--exclude-table): {', '.join(self.excluded)}")
        if self.checksum_reason:
            say(f"note: rows checksummed with {self.checksum}: {self.checksum_reason}")
        if self.identical:
            say(
                f"verified identical: {_n(len(self.tables), 'table')}, {_n(self.rows, 'row')}, "
                f"{_n(len(self.sequences), 'sequence')}, "
                f"{_n(self.large_objects.source_count, 'large object')} in {self.seconds:.1f} s "
                f"(checksum {self.checksum})"
            )
            return
        # One line per difference: readable in a terminal, in a CI log, and with grep.
        shown: dict[str, int] = {}
        hidden = 0
        for d in self.differences:
            shown[d.object] = shown.get(d.object, 0) + 1
            if shown[d.object] > SHOWN_PER_TABLE:
                hidden += 1
                continue
            where = f" [{d.range}]" if d.range else ""
            counts = (f": source {d.source_rows:,} rows, target {d.target_rows:,} rows"
                      if d.source_rows is not None and d.target_rows is not None else "")
            say(f"DIFFERS {d.object}{where}{counts} ({d.detail or d.kind})")
        if hidden:
            say(f"... and {hidden} more differing ranges (--json lists them all)")
        objects = len({d.object for d in self.differences})
        say(
            f"DIFFERENCES: {len(self.differences)} in {_n(objects, 'object')} "
            f"({_n(len(self.tables), 'table')}, {self.rows:,} source rows compared "
            f"in {self.seconds:.1f} s, checksum {self.checksum})"
        )


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
