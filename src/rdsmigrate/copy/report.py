"""The copy's result: what moved, how long it took, and what the user should know."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from rich.table import Table as RichTable

from rdsmigrate.progress import Reporter, human_bytes


class TableCopy(BaseModel):
    table: str
    rows: int
    bytes: int
    seconds: float
    method: str
    """``binary``/``text``, and the split when several workers shared the table."""
    run: int = 1
    """Which run copied it: above 1 when ``--resume`` finished an interrupted copy."""


class CopyReport(BaseModel):
    source: str
    target: str
    snapshot: str
    """How the consistent snapshot was taken: the replication slot, or the plain export."""
    slot_name: str | None = None
    """The persistent slot left for replication (``keep_slot``); None after a plain copy."""
    consistent_lsn: str | None = None
    """Source WAL position of the snapshot: replication starts exactly here."""
    jobs: int
    tables: list[TableCopy]
    sequences: int
    large_objects: int
    materialized_views: int
    database_settings: int
    roles_created: list[str]
    excluded: list[str] = []
    """``schema.name`` of each table ``--exclude-table`` left out (partitions and children of an
    excluded table included): none of its definition, rows or owned sequences was copied."""
    phases: dict[str, float]
    rows: int
    bytes: int
    seconds: float
    resumed: bool
    notes: list[str]
    report_path: Path | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def render(self, reporter: Reporter) -> None:
        console = reporter.console
        table = RichTable(title=f"copy {self.source} -> {self.target}", title_justify="left")
        for col, justify in (("table", "left"), ("rows", "right"), ("size", "right"),
                             ("seconds", "right"), ("method", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        biggest = sorted(self.tables, key=lambda t: t.bytes, reverse=True)
        for t in biggest[:15]:
            table.add_row(t.table, f"{t.rows:,}", human_bytes(t.bytes), f"{t.seconds:.1f}", t.method)
        if len(biggest) > 15:
            table.add_row(f"... {len(biggest) - 15} more", "", "", "", "")
        console.print(table)
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
        console.print(
            f"copied {len(self.tables)} tables, {self.rows:,} rows, {human_bytes(self.bytes)} in "
            f"{self.seconds:.1f} s ({self.mb_per_s:.1f} MB/s, {self.jobs} jobs); {self.sequences} "
            f"sequences, {self.large_objects} large objects, {self.materialized_views} materialized "
            f"views, {self.database_settings} database settings",
            markup=False, highlight=False,
        )
        console.print(f"phases: {phases}", markup=False, highlight=False)
        if self.excluded:
            console.print(f"left out (--exclude-table): {', '.join(self.excluded)}",
                          markup=False, highlight=False)
        for note in self.notes:
            console.print(f"note: {note}", markup=False, highlight=False)
        if self.report_path:
            console.print(f"report: {self.report_path}", markup=False, highlight=False)
