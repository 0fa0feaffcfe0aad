"""The one progress reporter: rich bars on a terminal, periodic plain lines otherwise.

Progress always goes to stderr so that ``--json`` output on stdout stays machine-readable.
Workers in threads call :meth:`Task.advance`; rendering is throttled so that reporting never costs
measurable time on the copy's hot path.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

PLAIN_INTERVAL_S = 5.0


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@dataclass
class Task:
    """One unit of work with rows and bytes; safe to advance from any thread."""

    reporter: Reporter
    name: str
    total_bytes: int | None
    rows: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    _id: TaskID | None = None

    def advance(self, rows: int = 0, nbytes: int = 0) -> None:
        self.rows += rows
        self.bytes += nbytes
        self.reporter._advanced(self, nbytes)

    def done(self) -> None:
        self.reporter._finished(self)


class Reporter:
    """Shows phases, tasks and messages to a person; silent with ``quiet``."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 force_plain: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.console = Console(file=self.stream, stderr=self.stream is sys.stderr,
                               highlight=False, soft_wrap=True)
        self.rich = self.console.is_terminal and not force_plain and not quiet
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._overall: Task | None = None
        self._last_plain = 0.0
        self._running: list[Task] = []

    # -- messages ----------------------------------------------------------------------------
    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"warning: {message}", style="yellow", markup=False)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A named step; prints its duration when it ends."""
        start = time.monotonic()
        self.info(f"{name} ...")
        yield
        self.info(f"{name}: done in {time.monotonic() - start:.1f} s")

    # -- transfers ---------------------------------------------------------------------------
    @contextmanager
    def transfer(self, name: str, total_bytes: int) -> Iterator[Task]:
        """An overall bar for a multi-table transfer; tasks opened inside feed it."""
        overall = Task(self, name, total_bytes)
        self._overall = overall
        if self.rich:
            self._progress = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(bar_width=30),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[rows]} rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
                refresh_per_second=4,
            )
            self._progress.start()
            overall._id = self._progress.add_task(name, total=total_bytes or None, rows=0)
        try:
            yield overall
            if self._progress is not None and overall._id is not None:
                # The total was an estimate (on-disk size); the end shows what actually moved, at
                # the transfer's average rate.
                self._progress.update(overall._id, total=overall.bytes, completed=overall.bytes)
                elapsed = max(time.monotonic() - overall.started, 1e-6)
                for shown in self._progress.tasks:
                    if shown.id == overall._id:
                        shown.finished_speed = overall.bytes / elapsed
        finally:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            self._overall = None
            self._plain_line(force=True)

    def task(self, name: str, total_bytes: int | None = None) -> Task:
        task = Task(self, name, total_bytes)
        with self._lock:
            self._running.append(task)
            if self._progress is not None:
                task._id = self._progress.add_task(f"  {name}", total=total_bytes or None, rows=0)
        return task

    def _advanced(self, task: Task, nbytes: int) -> None:
        overall = self._overall
        if overall is not None and task is not overall:
            overall.bytes += nbytes
        if self._progress is not None:
            now = time.monotonic()
            # rich redraws on its own thread; updating its state more often than it draws is waste
            if now - getattr(task, "_last_ui", 0.0) < 0.25:
                return
            task._last_ui = now  # type: ignore[attr-defined]
            with self._lock:
                if task._id is not None:
                    self._progress.update(task._id, completed=task.bytes, rows=f"{task.rows:,}")
                if overall is not None and overall._id is not None:
                    self._progress.update(overall._id, completed=overall.bytes,
                                          rows=f"{overall.rows + self._running_rows():,}")
        elif not self.quiet:
            self._plain_line()

    def _running_rows(self) -> int:
        return sum(t.rows for t in self._running)

    def _finished(self, task: Task) -> None:
        with self._lock:
            if task in self._running:
                self._running.remove(task)
            overall = self._overall
            if overall is not None and task is not overall:
                overall.rows += task.rows
            if self._progress is not None and task._id is not None:
                self._progress.remove_task(task._id)
            # The finished task's rows are now the server's exact count: show that total.
            if self._progress is not None and overall is not None and overall._id is not None:
                self._progress.update(overall._id,
                                      rows=f"{overall.rows + self._running_rows():,}")
        if self._progress is None and not self.quiet:
            elapsed = max(time.monotonic() - task.started, 1e-6)
            self.info(f"  {task.name}: {task.rows:,} rows, {human_bytes(task.bytes)} "
                      f"in {elapsed:.1f} s")

    def _plain_line(self, force: bool = False) -> None:
        overall = self._overall
        now = time.monotonic()
        if overall is None or self.rich or self.quiet:
            return
        if not force and now - self._last_plain < PLAIN_INTERVAL_S:
            return
        self._last_plain = now
        elapsed = max(now - overall.started, 1e-6)
        rate = overall.bytes / elapsed
        total = overall.total_bytes or 0
        pct = f"{100 * overall.bytes / total:.0f}%" if total else "?"
        eta = f", ETA {(total - overall.bytes) / rate:.0f} s" if rate > 0 and total > overall.bytes else ""
        running = ", ".join(t.name for t in self._running[:4])
        self.info(f"{overall.name}: {pct} {human_bytes(overall.bytes)} of {human_bytes(total)}, "
                  f"{overall.rows + self._running_rows():,} rows, {human_bytes(rate)}/s{eta}"
                  + (f"; running: {running}" if running else ""))
