"""The cutover's count check with a baseline taken before the freeze (``online.counts``).

The baseline's counts stand for a table at the freeze only if nothing inserted or deleted a row
of it since: these tests change tables after the baseline while the target receives nothing (its
subscription disabled), so a check that trusted a stale baseline would pass and the test fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from rdsmigrate.cli import app
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.online import counts
from rdsmigrate.testhook import PAUSE_AT, PAUSE_DIR
from tests.conftest import master, online_target_dsn, online_target_url

pytestmark = [pytest.mark.pg, pytest.mark.slow]

SCHEMA = """
CREATE TABLE grows (id int PRIMARY KEY, v text);
CREATE TABLE still (id int PRIMARY KEY, v text);
CREATE TABLE churns (id int PRIMARY KEY, v int);
INSERT INTO grows SELECT g, 'g' || g FROM generate_series(1, 300) g;
INSERT INTO still SELECT g, 's' || g FROM generate_series(1, 200) g;
INSERT INTO churns SELECT g, g FROM generate_series(1, 100) g;
"""


class Pair:
    def __init__(self, source: LocalCluster, sdb: str, target: LocalCluster, tdb: str) -> None:
        self.source, self.sdb, self.target, self.tdb = source, sdb, target, tdb
        self.src_ep = Endpoint.parse("source", source.url(sdb), "RDSMIGRATE_SOURCE")
        self.tgt_ep = Endpoint.parse("target", online_target_url(target, tdb), "RDSMIGRATE_TARGET")

    def src(self) -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
        return psycopg.connect(self.source.dsn(self.sdb), autocommit=True)

    def tgt(self) -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
        return psycopg.connect(online_target_dsn(self.target, self.tdb), autocommit=True)

    def write_and_leave(self, statement: str) -> None:
        """Run ``statement`` in its own session and wait until that backend has exited, as the
        freeze does for every session it ends (its statistics are flushed by then)."""
        with self.src() as conn:
            pid = conn.info.backend_pid
            conn.execute(statement)
        with self.src() as conn:
            deadline = time.monotonic() + 10
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                assert time.monotonic() < deadline
                time.sleep(0.02)

    def subscription(self, enabled: bool) -> str:
        with self.tgt() as conn:
            row = conn.execute("SELECT subname FROM pg_subscription").fetchone()
            assert row is not None
            conn.execute(f'ALTER SUBSCRIPTION "{row[0]}" {"ENABLE" if enabled else "DISABLE"}')
            return str(row[0])

    def caught_up(self, slot: str) -> None:
        with self.src() as conn:
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
            deadline = time.monotonic() + 30
            while not conn.execute(
                    "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots "
                    "WHERE slot_name = %s", [lsn[0] if lsn else None, slot]).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline
                time.sleep(0.05)

    def tables(self) -> list[catalog.Table]:
        with self.src() as conn:
            return catalog.list_tables(conn)

    def baseline(self, slot: str) -> counts.Baseline:
        with self.src() as src, self.tgt() as tgt:
            # A busy machine's apply may take longer than the product's few seconds of patience.
            base = counts.baseline(self.src_ep, self.tgt_ep, src, tgt, slot, self.tables(), 2, 60,
                                   confirm_wait_s=60)
        assert base is not None
        assert base.source_counts == {"public.grows": 300, "public.still": 200,
                                      "public.churns": 100}
        assert base.target_counts == base.source_counts
        return base

    def check(self, base: counts.Baseline | None) -> counts.Checked:
        with self.src() as src, self.tgt() as tgt:
            return counts.check_frozen(self.src_ep, self.tgt_ep, src, tgt, self.tables(), base, 2)


@pytest.fixture
def pair(pg_source: LocalCluster, pg_target: LocalCluster, source_db: str, target_db: str,
         tmp_path: Path) -> Iterator[Pair]:
    with master(pg_source, source_db) as conn:
        conn.execute(SCHEMA)
    result = CliRunner().invoke(app, ["sync", "--source", pg_source.url(source_db),
                                      "--target", online_target_url(pg_target, target_db), "--jobs", "2",
                                      "--state-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    p = Pair(pg_source, source_db, pg_target, target_db)
    yield p
    CliRunner().invoke(app, ["abort", "--source", pg_source.url(source_db),
                             "--target", online_target_url(pg_target, target_db), "--state-dir", str(tmp_path),
                             "--quiet"])


def test_a_table_that_grew_after_the_baseline_is_counted_again(pair: Pair) -> None:
    slot = pair.subscription(True)
    base = pair.baseline(slot)
    pair.subscription(False)  # nothing more reaches the target
    pair.write_and_leave("INSERT INTO grows VALUES (301, 'late')")
    with pytest.raises(UserError, match=r"public\.grows \(source 301, target 300\)"):
        pair.check(base)


def test_a_truncate_after_the_baseline_is_seen_although_statistics_do_not_count_it(
        pair: Pair) -> None:
    slot = pair.subscription(True)
    base = pair.baseline(slot)
    pair.subscription(False)
    pair.write_and_leave("TRUNCATE still")
    with pytest.raises(UserError, match=r"public\.still \(source 0, target 200\)"):
        pair.check(base)


def test_only_tables_whose_rows_were_inserted_or_deleted_are_recounted(pair: Pair) -> None:
    slot = pair.subscription(True)
    base = pair.baseline(slot)
    pair.write_and_leave("INSERT INTO grows VALUES (301, 'late'); DELETE FROM grows WHERE id = 1")
    pair.write_and_leave("UPDATE churns SET v = v + 1")  # updates never change a count
    pair.caught_up(slot)
    checked = pair.check(base)
    assert (checked.tables, checked.rows, checked.recounted) == (3, 600, 1)


def test_without_a_baseline_every_table_is_counted_during_the_freeze(pair: Pair) -> None:
    checked = pair.check(None)
    assert (checked.tables, checked.rows, checked.recounted) == (3, 600, 3)


def test_a_table_created_between_the_baseline_and_the_freeze_stops_the_cutover(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cutover resolves the selection before the freeze and reuses it while frozen unless
    the catalog's fingerprint changed: a table created in between is neither skipped by the
    count check nor a crash, but named, and the source is unfrozen."""
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv(PAUSE_AT, "cutover:before-freeze")
    monkeypatch.setenv(PAUSE_DIR, str(hold))
    outcome: dict[str, object] = {}

    def cutover() -> None:
        outcome["result"] = CliRunner().invoke(app, [
            "cutover", "--source", pair.source.url(pair.sdb),
            "--target", online_target_url(pair.target, pair.tdb), "--state-dir", str(tmp_path),
            "--quiet"])

    thread = threading.Thread(target=cutover)
    thread.start()
    deadline = time.monotonic() + 60
    while not (hold / "cutover:before-freeze.reached").exists():
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.02)
    with pair.src() as conn:
        conn.execute("CREATE TABLE late (id int PRIMARY KEY); INSERT INTO late VALUES (1)")
    (hold / "cutover:before-freeze.go").touch()
    thread.join(timeout=120)
    result = outcome["result"]
    assert getattr(result, "exit_code", None) == 2, getattr(result, "output", result)
    assert "public.late" in getattr(result, "output", ""), getattr(result, "output", "")
    with pair.src() as conn:
        conn.execute("INSERT INTO still VALUES (1000, 'writable again')")
