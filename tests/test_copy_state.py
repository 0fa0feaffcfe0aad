"""The copy's record (``copy.state``): every line reaches the file at once, fsyncs are grouped
for per-table steps only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdsmigrate.copy import state as state_module
from rdsmigrate.copy.state import CopyState
from rdsmigrate.db.connect import Endpoint


def test_per_table_records_are_written_at_once_and_fsynced_in_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(state_module.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    source = Endpoint.parse("source", "postgresql://u@127.0.0.1:5432/a")
    target = Endpoint.parse("target", "postgresql://u@127.0.0.1:5433/b")
    state = CopyState.open(tmp_path, source, target, resume=False)
    assert len(synced) == 1  # "start" is fsync'ed at once
    for i in range(200):
        state.record("table", table=f"s.t{i}", rows=1)
        # What a SIGKILL right now would leave: the line is already in the file.
        assert len(CopyState._read(state.path)) == 2 + i
    assert len(synced) < 10, len(synced)
    state.record("pre-data")
    assert len(synced) < 11 and synced  # other events: fsync'ed each
    before = len(synced)
    state.record("finished")
    assert len(synced) == before + 1
    state.close()
