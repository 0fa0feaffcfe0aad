"""What a copy has finished, recorded durably so that ``copy --resume`` can continue it.

One JSON object per line, appended as each step finishes: a SIGKILL or a crash of the tool loses at
most the step in flight, which ``--resume`` then redoes (each line is written to the kernel before
the next step starts, and a killed process's writes stay in the page cache). Lines are fsync'ed
at most every :data:`FSYNC_EVERY_S` for the per-table steps, and at once for every other event:
an fsync costs 2-5 ms here, so one per table and index build of 10,000 tables was 40-90 s of
the parent's time. A machine crash can therefore also lose the last fraction of a second of
per-table records, which ``--resume`` redoes like the step in flight. The schema archive sits beside it, so a
resumed copy builds the same indexes and constraints as the first run would have.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError

FSYNC_EVERY_S = 0.5
PER_TABLE_EVENTS = frozenset({"table", "indexes"})


class CopyState:
    def __init__(self, path: Path, events: list[dict[str, Any]]) -> None:
        self.path = path
        self.events = events
        self._synced_at = 0.0
        self._file: Any = None
        self._lock = threading.Lock()
        """Opened once: 20,000 records of 10,000 tables each opening the file were ~0.5 s of
        the parent's CPU, which its index-building threads wait for."""

    @classmethod
    def location(cls, state_dir: Path, target: Endpoint) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{target.host}_{target.port}_{target.dbname}")
        return state_dir / f"copy-{stem}.jsonl"

    @classmethod
    def open(cls, state_dir: Path, source: Endpoint, target: Endpoint, *, resume: bool) -> CopyState:
        path = cls.location(state_dir, target)
        events = cls._read(path) if path.exists() else []
        finished = any(e["event"] == "finished" for e in events)
        if resume:
            if not events:
                raise UserError(f"nothing to resume for target {target.describe()}: no record at "
                                f"{path}; run copy without --resume")
            if finished:
                raise UserError(f"the copy to {target.describe()} recorded at {path} already "
                                "finished: nothing to resume")
            recorded = events[0].get("source")
            if recorded != source.describe():
                raise UserError(f"the interrupted copy at {path} read from {recorded}, not "
                                f"{source.describe()}: resume with the same --source")
            return cls(path, events)
        state_dir.mkdir(parents=True, exist_ok=True)
        state = cls(path, [])
        path.write_text("")
        state.record("start", source=source.describe(), target=target.describe())
        return state

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash: everything before it is intact
        return events

    def record(self, event: str, **data: Any) -> None:
        entry = {"event": event, "at": time.time(), **data}
        if event != "indexes":  # for people reading the file: never read back, so not kept
            self.events.append(entry)
        line = json.dumps(entry) + "\n"
        with self._lock:  # index builders record from their threads: whole lines, in turn
            if self._file is None:
                self._file = self.path.open("a")  # kept for the command's life
            self._file.write(line)
            self._file.flush()
            now = time.monotonic()
            if event not in PER_TABLE_EVENTS or now - self._synced_at >= FSYNC_EVERY_S:
                os.fsync(self._file.fileno())
                self._synced_at = now

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def has(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events)

    def finished_tables(self) -> dict[str, dict[str, Any]]:
        return {e["table"]: e for e in self.events if e["event"] == "table"}

    @property
    def archive_path(self) -> Path:
        return self.path.with_suffix(".schema.dump")
