"""The demo's result: the key figures of each phase, rendered as one small table for people."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel
from rich import box
from rich.table import Table as RichTable

from rdsmigrate.progress import Reporter, human_bytes


class ClusterAccess(BaseModel):
    """How to reach one of the demo's clusters; never the password itself.

    ``passfile`` and ``stop_command`` are set only when the clusters are kept (``--keep``): the
    password is in that ``.pgpass``-format file (mode 0600), which libpq reads via PGPASSFILE.
    """

    role: str
    server: str
    host: str
    port: int
    dbname: str
    user: str
    passfile: Path | None = None
    stop_command: str | None = None

    def psql_command(self, psql: str = "psql") -> str:
        return (f"PGPASSFILE={self.passfile} {psql} -h {self.host} -p {self.port} "
                f"-U {self.user} {self.dbname}")


class DemoReport(BaseModel):
    scale: int
    jobs: int
    source: ClusterAccess
    target: ClusterAccess
    tables: int
    """Tables holding rows (partitions counted one by one), as the copy moved them."""
    rows: int
    bytes: int
    """Bytes the copy streamed."""
    database_bytes: int
    """Size of the source database on disk, indexes included."""
    build_seconds: float
    preflight_seconds: float
    copy_seconds: float
    copy_mb_per_s: float
    verify_seconds: float
    verified_rows: int
    identical: bool
    sequences: int
    large_objects: int
    total_seconds: float
    kept: bool
    psql: str = "psql"
    copy_report: Path | None = None
    """The copy's JSON report; kept only with the clusters."""

    def render(self, reporter: Reporter) -> None:
        table = RichTable(title=f"demo: paymentdb at scale {self.scale}", title_justify="left",
                          box=box.SIMPLE, show_header=False)
        table.add_column("what", style="bold")
        table.add_column("figure")
        table.add_row("source", f"{self.source.role}, {self.source.server}, "
                                f"{human_bytes(self.database_bytes)} built in {self.build_seconds:.1f} s")
        table.add_row("target", f"{self.target.role}, {self.target.server}")
        table.add_row("rows", f"{self.rows:,} in {self.tables} tables, {self.sequences} sequences, "
                              f"{self.large_objects} large objects")
        table.add_row("copy", f"{human_bytes(self.bytes)} in {self.copy_seconds:.1f} s, "
                              f"{self.copy_mb_per_s:.1f} MB/s with {self.jobs} jobs")
        table.add_row("verify", f"{self.verified_rows:,} rows in {self.verify_seconds:.1f} s: "
                                + ("verified identical" if self.identical else "DIFFERENCES"))
        table.add_row("total", f"{self.total_seconds:.1f} s (preflight {self.preflight_seconds:.1f} s)")
        reporter.console.print(table)
        for line in self.access_lines():
            reporter.console.print(line, markup=False, highlight=False)

    def access_lines(self) -> list[str]:
        if not self.kept:
            return []
        return access_lines([self.source, self.target], self.psql, self.copy_report)


def access_lines(sides: list[ClusterAccess], psql: str, copy_report: Path | None) -> list[str]:
    """How to connect to and stop kept clusters, for the summary or, after a failure, stderr."""
    lines = ["clusters kept running; passwords are in the PGPASSFILE files (mode 0600):"]
    for side in sides:
        lines.append(f"  {side.role}: {side.psql_command(psql)}")
        if side.stop_command:
            lines.append(f"    stop and remove: {side.stop_command}")
    if copy_report:
        lines.append(f"  copy report: {copy_report}")
    return lines
