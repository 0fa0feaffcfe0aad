"""Building each table's indexes as soon as its rows are in, while other tables still load.

The raw sequence (all rows, then all indexes) leaves a core idle whenever the last big table is
loading alone, and index builds are about 40 % of a copy. Up to ``jobs`` builds run at once: one
finished table's indexes and key constraints must not wait for another's (measured at scale 40:
with one builder, the big table's primary key waited 1.3 s behind the other table's three
indexes once both tables' rows were in). Everything that needs several tables (foreign keys) or
runs in the end anyway (triggers, policies) waits for the final pass.

A small table's entries go to one ``pg_restore``: a process and a connection per index would cost
more than the builds. A big table's entries each get their own, because ``pg_restore --jobs``
never runs two entries of one table together while the server can: ``CREATE INDEX`` takes a
lock that does not conflict with itself, so a big table's indexes build side by side.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass, field

from rdsmigrate import schema
from rdsmigrate.copy.state import CopyState
from rdsmigrate.db.connect import Endpoint

# Above this a table's index builds are long enough to be worth a pg_restore each.
SEPARATE_BUILDS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, order=True)
class _Build:
    rank: tuple[int, int]
    """Biggest table first, then queue order; the stop marks come last."""
    table: str = field(compare=False)
    lines: list[str] = field(compare=False)
    name: str = field(compare=False)


_STOP = _Build((1, 0), "", [], "")


class IndexBuilder:
    def __init__(self, archive: schema.SchemaArchive, target: Endpoint, post: schema.PostData,
                 state: CopyState, roles: bool, jobs: int) -> None:
        self.archive, self.target, self.post = archive, target, post
        self.state, self.workdir, self.roles = state, state.path.parent, roles
        self.built: set[str] = set()
        self.errors: list[Exception] = []
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        # Longest builds first: a big table's index must not wait behind a smaller one's.
        self._queue: queue.PriorityQueue[_Build] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"rdsmigrate-indexes-{i}",
                                          daemon=True) for i in range(max(1, 2 * jobs))]
        for thread in self._threads:
            thread.start()

    def table_loaded(self, table: str, table_bytes: int) -> None:
        lines = self.post.per_table.get(table)
        if not lines:
            return
        stem = "indexes-" + "".join(c if c.isalnum() else "_" for c in table)
        groups = ([[line] for line in lines] if table_bytes >= SEPARATE_BUILDS_BYTES
                  else [lines])
        with self._lock:
            self._pending[table] = len(groups)
        for i, group in enumerate(groups):
            self._queue.put(_Build((-table_bytes, next(self._order)), table, group, f"{stem}-{i}"))

    def finish(self) -> None:
        """Wait for every build queued so far; the final pass does what is left."""
        self._close()

    def abandon(self) -> None:
        """After an interruption or an error: drop the queued builds, let the running ones end.

        A build is one transaction on the target, so stopping between builds leaves nothing
        half-made; ``--resume`` builds whatever is not recorded.
        """
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._close(timeout=30)

    def _close(self, timeout: float | None = None) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _work(self) -> None:
        while (build := self._queue.get()) is not _STOP:
            if self.errors:
                continue
            try:
                schema.restore_lines(self.archive, self.target, build.lines, self.workdir,
                                     build.name, section="post-data", roles=self.roles)
            except Exception as exc:  # raised by the main thread after the data phase
                self.errors.append(exc)
                continue
            with self._lock:
                self._pending[build.table] -= 1
                done = self._pending[build.table] == 0
                if done:
                    # Recorded once the whole table is built, so --resume never skips a part.
                    self.built.add(build.table)
                    self.state.record("indexes", table=build.table)
