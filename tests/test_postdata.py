"""Post-data on real clusters: partition trees' indexes valid after parallel copies, no
deadlock between attachments and foreign keys, the validity check, and ``--replace``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from rdsmigrate import copy, schema
from rdsmigrate.copy import postdata
from rdsmigrate.db import selection
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.db.tools import client_tools
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions
from tests.conftest import admin, create_database, drop_database
from tests.dbcheck import assert_same

pytestmark = pytest.mark.pg

# Like trigger_parted in PostgreSQL's regression tests, many times over: three levels, a primary
# key and an index on each tree (so attachments at two levels of one tree), a foreign key from
# each tree to a plain table and one from a plain table to each tree.
TREES = 40
PARTITIONED = f"""
CREATE TABLE pt (b int PRIMARY KEY);
INSERT INTO pt SELECT generate_series(0, 8);
DO $$
BEGIN
  FOR t IN 0..{TREES - 1} LOOP
    EXECUTE format('CREATE TABLE tp%s (a int PRIMARY KEY, b int REFERENCES pt)
                    PARTITION BY LIST (a)', t);
    EXECUTE format('CREATE INDEX ON tp%s (b)', t);
    FOR i IN 0..2 LOOP
      EXECUTE format('CREATE TABLE tp%s_%s PARTITION OF tp%s FOR VALUES IN (%s, %s, %s)
                      PARTITION BY LIST (a)', t, i, t, i * 3, i * 3 + 1, i * 3 + 2);
      FOR j IN 0..2 LOOP
        EXECUTE format('CREATE TABLE tp%s_%s_%s PARTITION OF tp%s_%s FOR VALUES IN (%s)',
                       t, i, j, t, i, i * 3 + j);
      END LOOP;
    END LOOP;
    EXECUTE format('INSERT INTO tp%s SELECT g, g FROM generate_series(0, 8) g', t);
    EXECUTE format('CREATE TABLE r%s (id int PRIMARY KEY, a int REFERENCES tp%s)', t, t);
    EXECUTE format('INSERT INTO r%s SELECT g, g FROM generate_series(0, 8) g', t);
  END LOOP;
END $$;
"""
COPIES = 4


def _copy(source: LocalCluster, source_db: str, target: LocalCluster, target_db: str,
          state: Path, **options: object) -> copy.CopyReport:
    opts = CopyOptions(state_dir=state, **options)  # type: ignore[arg-type]
    return copy.run(Endpoint.parse("source", source.url(source_db)),
                    Endpoint.parse("target", target.url(target_db)), opts, Reporter(quiet=True))


def _invalid(cluster: LocalCluster, db: str) -> set[str]:
    """The test's own query: indexes not valid or not ready, constraints not validated."""
    with psycopg.connect(cluster.dsn(db)) as conn:
        return {r[0] for r in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT (indisvalid AND indisready)"
            " UNION ALL SELECT conname FROM pg_constraint WHERE NOT convalidated").fetchall()}


def test_parallel_copies_of_multi_level_partition_trees_leave_every_index_valid(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, tmp_path: Path,
) -> None:
    """Before the attachments ran serially, about one ``--jobs 4`` copy in three of this schema
    left a tree's top index invalid (exit 0), and some failed on a foreign key to it or in a
    deadlock between an attachment and ``ADD FOREIGN KEY``."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(PARTITIONED)
    for attempt in range(COPIES):
        target_db = create_database(pg_target, "tgt")
        try:
            _copy(pg_source, source_db, pg_target, target_db, tmp_path / f"state{attempt}", jobs=4)
            assert _invalid(pg_target, target_db) == set(), f"copy {attempt + 1}"
            assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
        finally:
            drop_database(pg_target, target_db)


def test_the_final_pass_runs_attachments_alone_and_foreign_keys_after_them(
    pg_source: LocalCluster, source_db: str, tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(PARTITIONED.replace(f"0..{TREES - 1}", "0..1"))
        archive = schema.dump(client_tools(15), Endpoint.parse("source", pg_source.url(source_db)), None,
                              selection.EVERYTHING, tmp_path / "schema.dump")
        post = schema.split_post_data(archive, conn, roles=False)
    builds, attachments, rest = postdata.phases(post.entries)
    assert {e.desc for e in builds} == {"INDEX", "CONSTRAINT"}
    assert {e.desc for e in attachments} == {"INDEX ATTACH"} and len(attachments) == 2 * 2 * 12
    assert {e.desc for e in rest} == {"FK CONSTRAINT"}
    # Foreign keys on and to the same tree never run side by side.
    tree = {e.tag: e.locks for e in rest}
    assert set(tree["tp0 tp0_b_fkey"]) & set(tree["r0 r0_a_fkey"])


def test_an_invalid_index_or_constraint_fails_the_check_with_the_fix(
    pg_target: LocalCluster, target_db: str,
) -> None:
    source_db = create_database(pg_target, "src")
    try:
        with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as tgt, \
                psycopg.connect(pg_target.dsn(source_db), autocommit=True) as src:
            for conn in (src, tgt):
                conn.execute("CREATE TABLE p (a int) PARTITION BY LIST (a);"
                             "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);"
                             "CREATE TABLE c (a int); ALTER TABLE c ADD CHECK (a > 0) NOT VALID")
            postdata.check_valid(src, tgt, Endpoint.parse("target", pg_target.url(target_db)),
                                 "rerun with --resume")
            # An index on the parent only, never attached: invalid, as a lost race leaves it.
            tgt.execute("CREATE INDEX p_a ON ONLY p (a)")
            with pytest.raises(UserError, match=r"index public\.p_a .*invalid.*--resume"):
                postdata.check_valid(src, tgt, Endpoint.parse("target", pg_target.url(target_db)),
                                     "rerun with --resume")
    finally:
        drop_database(pg_target, source_db)


# What --replace must get through: partition trees with keys, foreign keys both ways, a view,
# an enum, a serial column, and a function whose body drops a table the source does not have.
REPLACEABLE = PARTITIONED.replace(f"0..{TREES - 1}", "0..1") + """
CREATE TYPE mood AS ENUM ('ok', 'meh');
CREATE TABLE notes (id serial PRIMARY KEY, m mood, a int REFERENCES tp0);
INSERT INTO notes (m, a) VALUES ('ok', 1), ('meh', 2);
CREATE VIEW happy AS SELECT id FROM notes WHERE m = 'ok';
CREATE FUNCTION cleanup() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1;
  DROP TABLE other;
END $$;
"""


def _fill(cluster: LocalCluster, db: str, script: str) -> None:
    with psycopg.connect(cluster.dsn(db), autocommit=True) as conn:
        conn.execute(script)


def test_replace_drops_only_what_the_copy_recreates(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """A DROP TABLE inside a function body is not a statement to run, and a partitioned table
    with a primary key is dropped whole, not partition constraints first."""
    _fill(pg_source, source_db, REPLACEABLE)
    _copy(pg_source, source_db, pg_target, target_db, tmp_path / "first", jobs=2)
    _fill(pg_target, target_db, "CREATE TABLE other (x int); INSERT INTO other VALUES (7);"
                                "INSERT INTO notes (m, a) VALUES ('ok', 3)")
    _copy(pg_source, source_db, pg_target, target_db, tmp_path / "again", jobs=2, replace=True)
    with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as conn:
        assert conn.execute("SELECT x FROM other").fetchall() == [(7,)]
        conn.execute("DROP TABLE other")
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))


def test_replace_finishes_over_a_target_a_failed_copy_left_half_restored(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    _fill(pg_source, source_db, REPLACEABLE)
    # What a copy that failed after its pre-data leaves: every table, no rows, no keys.
    archive = tmp_path / "pre.dump"
    bindir = pg_source.bindir
    env = {"PGPASSWORD": pg_source.password}
    subprocess.run([str(bindir / "pg_dump"), "-Fc", "--schema-only", "-f", str(archive),
                    pg_source.dsn(source_db)], check=True, env=env)
    subprocess.run([str(bindir / "pg_restore"), "--section=pre-data", "--no-owner", "-d",
                    pg_target.dsn(target_db), str(archive)], check=True,
                   env={"PGPASSWORD": pg_target.password})
    _copy(pg_source, source_db, pg_target, target_db, tmp_path / "state", jobs=2, replace=True)
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))


def test_replace_refuses_to_drop_what_a_target_only_object_needs(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    _fill(pg_source, source_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    _fill(pg_target, target_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (5);"
                                "CREATE TABLE mine (id int REFERENCES t)")
    with pytest.raises(UserError, match=r"drop table public\.t .*mine.*nothing was dropped"):
        _copy(pg_source, source_db, pg_target, target_db, tmp_path / "state", replace=True)
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        assert conn.execute("SELECT id FROM t").fetchall() == [(5,)]


def test_resume_rebuilds_a_partitioned_key_a_lost_race_left_invalid(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """What the race leaves: every partition's key attached and valid, the top one invalid for
    good (set here in the catalog, as superuser, since the race itself cannot be forced). The
    resumed pass drops it (the archive defines it) and builds it again."""
    tree = ("CREATE TABLE p (a int PRIMARY KEY) PARTITION BY LIST (a);"
            "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1, 2) PARTITION BY LIST (a);"
            "CREATE TABLE p11 PARTITION OF p1 FOR VALUES IN (1);"
            "CREATE TABLE p12 PARTITION OF p1 FOR VALUES IN (2);"
            "INSERT INTO p VALUES (1), (2)")
    _fill(pg_source, source_db, tree)
    _fill(pg_target, target_db, tree)
    with admin(pg_target, target_db) as conn:  # a catalog update needs the superuser
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'p_pkey'::regclass")
    target = Endpoint.parse("target", pg_target.url(target_db))
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src, \
            psycopg.connect(pg_target.dsn(target_db), autocommit=True) as tgt:
        archive = schema.dump(client_tools(15), Endpoint.parse("source", pg_source.url(source_db)),
                              None, selection.EVERYTHING, tmp_path / "schema.dump")
        post = schema.split_post_data(archive, src, roles=False)
        with pytest.raises(UserError, match=r"index public\.p_pkey"):
            postdata.check_valid(src, tgt, target, "rerun")
        postdata.repair(tgt, post)
        postdata.run(target, post.entries, jobs=2, resume=True, hint="rerun")
        postdata.check_valid(src, tgt, target, "rerun")
    assert _invalid(pg_target, target_db) == set()
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
