"""Building each table's indexes as soon as its rows are in, while other tables still load.

The raw sequence (all rows, then all indexes) leaves a core idle whenever the last big table is
loading alone, and index builds are about 40 % of a copy. But while rows still load, the builds
must not take the cores from the copy: the biggest table's rows, then its indexes, are the
copy's critical path. So during the data phase one build runs at a time, in one process
(``max_parallel_maintenance_workers = 0``): at scale 120, three parallel builds of the finished
``payments`` table (nine processes) stretched the loading of ``pgbench_accounts`` from about 15 s
to 25 s. Once every row is in (:meth:`IndexBuilder.rows_done`), up to two builds per job run at
once with the server's parallel workers: one finished table's indexes and key constraints must
not wait for another's (at scale 40, with one builder, the big table's primary key waited 1.3 s
behind the other table's three indexes). But no more than one big table's build per job: at
scale 40, four at once (twelve processes with their parallel workers, on two cores) made the
index phase longer than two at once in each of 6 paired durable runs (by 0.07-0.97 s; medians
2.99 s against 2.37 s). Small tables' builds are not held back: they wait mostly for the flush of each
new index file, which side by side sessions overlap. Everything that needs several tables
(foreign keys) or runs in the end anyway (triggers, policies) waits for the final pass.

The builds run through the builders' own long-lived sessions, with the SQL of the archive's
entries read once (:func:`rdsmigrate.schema.split_post_data`): with thousands of small tables a
``pg_restore`` process and connection per table cost more than the builds (5,000 tables: short
``pg_restore`` runs came and went one after another). A small table's entries run in one
transaction, so one commit per table. A big table's entries each build on their own, side by
side: ``CREATE INDEX`` takes a lock that does not conflict with itself. Its primary
key and unique constraints are built as unique indexes too, and attached (``ADD CONSTRAINT ..
USING INDEX``) once the table's last build is done (see :class:`rdsmigrate.schema.KeyBuild`).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from dataclasses import dataclass, field

import psycopg

from rdsmigrate import schema
from rdsmigrate.copy.state import CopyState
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError

# Above this a table's index builds are long enough to be worth a pg_restore each.
SEPARATE_BUILDS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, order=True)
class _Build:
    rank: tuple[int, int]
    """Biggest table first, then queue order; the stop marks come last."""
    table: str = field(compare=False)
    entries: list[schema.Entry] = field(compare=False)
    """Entries run in one transaction; empty for a :class:`schema.KeyBuild`."""
    key: schema.KeyBuild | None = field(compare=False, default=None)

    @property
    def big(self) -> bool:
        return -self.rank[0] >= SEPARATE_BUILDS_BYTES


_STOP = _Build((1, 0), "", [])


class IndexBuilder:
    def __init__(self, archive: schema.SchemaArchive, target: Endpoint, post: schema.PostData,
                 state: CopyState, jobs: int, hint: str) -> None:
        self.archive, self.target, self.post = archive, target, post
        self.state, self.hint = state, hint
        self.built: set[str] = set()
        self.errors: list[Exception] = []
        self._pending: dict[str, int] = {}
        self._attach: dict[str, list[str]] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        # Longest builds first: a big table's index must not wait behind a smaller one's.
        self._queue: queue.PriorityQueue[_Build] = queue.PriorityQueue()
        self._order = itertools.count()
        self._slots = threading.Condition()
        self._running = 0
        self._limit = 1
        self._big_builds = threading.BoundedSemaphore(max(1, jobs))
        self._abandoned = False
        self._threads = [threading.Thread(target=self._work, name=f"rdsmigrate-indexes-{i}",
                                          daemon=True) for i in range(max(1, 2 * jobs))]
        for thread in self._threads:
            thread.start()

    def table_loaded(self, table: str, table_bytes: int) -> None:
        entries = self.post.per_table.get(table)
        if not entries:
            return
        if table_bytes < SEPARATE_BUILDS_BYTES:
            builds = [_Build((-table_bytes, next(self._order)), table, entries)]
        else:
            keys = [self.post.key_builds.get(entry.dump_id) for entry in entries]
            builds = [_Build((-table_bytes, next(self._order)), table, [] if key else [entry], key)
                      for entry, key in zip(entries, keys, strict=True)]
            self._attach[table] = [stmt for key in keys if key for stmt in key.attach]
        with self._lock:
            self._pending[table] = len(builds)
        for build in builds:
            self._queue.put(build)

    def rows_done(self) -> None:
        """Every row is in: the builds may now take every core."""
        with self._slots:
            self._limit = len(self._threads)
            self._slots.notify_all()

    def finish(self) -> None:
        """Wait for every build queued so far; the final pass does what is left."""
        self._close()

    def abandon(self) -> None:
        """After an interruption or an error: drop the queued builds, let the running ones end.

        A build is one transaction on the target, so stopping between builds leaves nothing
        half-made; ``--resume`` builds whatever is not recorded.
        """
        self._abandoned = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._close(timeout=30)

    def _close(self, timeout: float | None = None) -> None:
        self.rows_done()
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _work(self) -> None:
        try:
            while True:
                with self._slots:
                    self._slots.wait_for(lambda: self._running < self._limit)
                    self._running += 1
                try:
                    build = self._queue.get()
                    if build is _STOP:
                        return
                    if not self.errors:
                        self._build(build, alone=self._limit == 1)
                except Exception as exc:  # raised by the main thread after the data phase
                    self.errors.append(exc)
                finally:
                    with self._slots:
                        self._running -= 1
                        self._slots.notify_all()
        finally:
            if (conn := getattr(self._local, "conn", None)) is not None:
                conn.close()

    def _build(self, build: _Build, *, alone: bool) -> None:
        # alone: rows still load, so the build stays in one process (see the module docstring).
        settings = {"max_parallel_maintenance_workers": "0"} if alone else {}
        with self._big_builds if build.big else contextlib.nullcontext():
            if self._abandoned:
                return  # waited for a slot while the copy stopped
            self._execute([build.key.create] if build.key else [], build.entries, settings)
        with self._lock:
            self._pending[build.table] -= 1
            if self._pending[build.table] > 0:
                return
        # The table's last build: no other holds a lock on it, so attaching waits for nothing.
        self._execute(self._attach.get(build.table, []))
        with self._lock:
            # Recorded once the whole table is built, so --resume never skips a part.
            self.built.add(build.table)
            self.state.record("indexes", table=build.table)

    def _execute(self, statements: list[str], entries: list[schema.Entry] | None = None,
                 settings: dict[str, str] | None = None) -> None:
        """Run ``statements`` and ``entries`` in one transaction on this thread's own target
        session."""
        if not statements and not entries:
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.target, autocommit=True)
            # As pg_restore does: a server-wide timeout must not abort a long index build.
            schema.prepare_session(conn)
        try:
            schema.run_entries(conn, entries or [], settings, statements)
        except psycopg.Error as exc:
            raise UserError(f"building indexes on target {self.target.describe()} failed: "
                            f"{self.target.redact(str(exc).strip())}. Fix the cause, then "
                            f"{self.hint}") from exc
