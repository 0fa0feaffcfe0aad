"""Small tables are loaded several to one target transaction (``copy.stream.batchable``)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from rdsmigrate import copy
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions
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
