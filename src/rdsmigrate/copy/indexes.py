"""Building each table's indexes as soon as its rows are in, while other tables still load.

The raw sequence (all rows, then all indexes) leaves a core idle whenever the last big table is
loading alone, and index builds are about 40 % of a copy. One background ``pg_restore`` at a time
builds a finished table's own indexes and key constraints; everything that needs several tables
(foreign keys) or runs in the end anyway (triggers, policies) waits for the final pass.
"""

from __future__ import annotations

import queue
import threading

from rdsmigrate import schema
from rdsmigrate.copy.state import CopyState
from rdsmigrate.db.connect import Endpoint


class IndexBuilder:
    def __init__(self, archive: schema.SchemaArchive, target: Endpoint, post: schema.PostData,
                 state: CopyState, roles: bool) -> None:
        self.archive, self.target, self.post = archive, target, post
        self.state, self.workdir, self.roles = state, state.path.parent, roles
        self.built: set[str] = set()
        self.errors: list[Exception] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="rdsmigrate-indexes", daemon=True)
        self._thread.start()

    def table_loaded(self, table: str) -> None:
        if table in self.post.per_table:
            self._queue.put(table)

    def finish(self) -> None:
        """Wait for the builds already queued; the final pass does what is left."""
        self._queue.put(None)
        self._thread.join()

    def abandon(self) -> None:
        """After an interruption or an error: drop the queued builds, let the running one end.

        A build is one transaction on the target, so stopping between builds leaves nothing
        half-made; ``--resume`` builds whatever is not recorded.
        """
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (table := self._queue.get()) is not None:
            if self.errors:
                continue
            try:
                name = "indexes-" + "".join(c if c.isalnum() else "_" for c in table)
                schema.restore_lines(self.archive, self.target, self.post.per_table[table],
                                     self.workdir, name, section="post-data", roles=self.roles)
                self.built.add(table)
                self.state.record("indexes", table=table)
            except Exception as exc:  # raised by the main thread after the data phase
                self.errors.append(exc)
