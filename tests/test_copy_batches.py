"""Copies shaped by what the durable target or the client programs need: small tables loaded
several to one transaction (``copy.stream.batchable``), post-data committed without waiting for
each flush, a pg_restore newer than the target."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from rdsmigrate import copy
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.db.tools import BINDIR_ENV, embedded_bindir
from rdsmigrate.localpg import LocalCluster, find_bindir
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions
from tests.conftest import create_database, rds_like_cluster
from tests.dbcheck import assert_same


def test_small_tables_share_target_transactions_and_skip_the_truncate(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path,
) -> None:
    """Tables under stream.FREEZE_MIN_BYTES go in by plain COPY, several to one transaction: the
    target's rows of many tables carry few distinct xmins (one each without batches)."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        for i in range(12):
            conn.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, v text)")
            conn.execute(f"INSERT INTO t{i} SELECT g, 'v' || g FROM generate_series(1, 50) g")
    report = copy.run(Endpoint.parse("source", pg_source.url(source_db)),
                      Endpoint.parse("target", pg_target.url(target_db)),
                      CopyOptions(jobs=1, state_dir=tmp_path / "state"), Reporter(quiet=True))
    assert {t.rows for t in report.tables} == {50}
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        union = " UNION ALL ".join(f"SELECT xmin::text AS x FROM t{i}" for i in range(12))
        row = conn.execute(f"SELECT count(DISTINCT x) FROM ({union}) s").fetchone()
        assert row is not None and row[0] < 12 // 2, row


def test_a_target_crash_right_after_the_copy_loses_nothing(
    pg_source: LocalCluster, source_db: str, tmp_path: Path,
) -> None:
    """Post-data sessions commit without waiting for the WAL flush (schema.prepare_session); the
    copy flushes once before it records post-data as done. Here the target's WAL writer waits
    10 s before it flushes a partly filled WAL page, so without that flush the last foreign
    keys' commits would still be in the server's memory when it crashes right after the copy."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("INSERT INTO parent SELECT generate_series(1, 10)")
        for i in range(40):
            conn.execute(f"CREATE TABLE c{i} (id int PRIMARY KEY, p int REFERENCES parent,"
                         f" v text); CREATE INDEX ON c{i} (p, v);"
                         f" INSERT INTO c{i} SELECT g, 1 + g % 10, 'v' FROM generate_series(1, 20) g")
    target = rds_like_cluster(find_bindir(15), "crash", source=False,
                              settings={"wal_writer_delay": "10s"})
    try:
        db = create_database(target, "crash")
        copy.run(Endpoint.parse("source", pg_source.url(source_db)),
                 Endpoint.parse("target", target.url(db)),
                 CopyOptions(jobs=2, state_dir=tmp_path / "state"), Reporter(quiet=True))
        target.restart("immediate")
        assert_same(pg_source.dsn(source_db), target.dsn(db))
    finally:
        target.stop()


def test_pg_restore_newer_than_17_restores_into_a_target_older_than_17(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner image has only the wheel's 18 client programs, and a 16 to 16 copy finds no
    client between 16 and 18: pg_restore 18 starts every session with SET transaction_timeout,
    which a 15 target refused, failing the one-transaction pre-data restore."""
    bindir = embedded_bindir()
    assert bindir is not None
    monkeypatch.setenv(BINDIR_ENV, str(bindir))
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE VIEW v AS SELECT * FROM t;"
                     "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
    report = copy.run(Endpoint.parse("source", pg_source.url(source_db)),
                      Endpoint.parse("target", pg_target.url(target_db)),
                      CopyOptions(jobs=2, state_dir=tmp_path / "state"), Reporter(quiet=True))
    assert [t.rows for t in report.tables] == [100]
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
