"""The pre-data schema restored by several sessions that commit together (rdsmigrate.copy.predata)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from typer.testing import CliRunner

from rdsmigrate import copy
from rdsmigrate.cli import app
from rdsmigrate.copy import predata
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.schema import Entry
from rdsmigrate.settings import CopyOptions
from tests.conftest import admin, superuser_url
from tests.dbcheck import assert_same


def _entry(dump_id: int, *deps: int) -> Entry:
    return Entry(dump_id=dump_id, desc="TABLE", tag=f"t{dump_id}", catalog=(1259, dump_id),
                 deps=deps, tablespace="", sql=f"CREATE TABLE t{dump_id} ()")


def test_sessions_get_whole_dependency_groups_in_archive_order_not_dump_id_order() -> None:
    """A view made before the table it reads was made again has the lower dump id: it must
    still run after the table, in the same session; groups joined only through another entry
    stay together, and an entry restored by nobody (the target's own public schema) joins
    nothing."""
    archive_order = [_entry(9), _entry(3, 9), _entry(20), _entry(21, 20), _entry(5, 3),
                     _entry(7, 1), _entry(8, 1)]
    shares = predata.assign(archive_order, 2)
    position = {e.dump_id: i for i, e in enumerate(archive_order)}
    assert sorted(e.dump_id for share in shares for e in share) == sorted(position)
    for share in shares:
        assert [position[e.dump_id] for e in share] == sorted(position[e.dump_id] for e in share)
    where = {e.dump_id: i for i, share in enumerate(shares) for e in share}
    assert where[9] == where[3] == where[5]
    assert where[20] == where[21]
    assert [len(group) for group in predata.groups(archive_order)] == [3, 2, 1, 1]


def test_a_failure_in_one_session_rolls_back_every_session_and_names_the_entry(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Twelve schemas in four sessions; the last schema's function needs plpgsql, which this
    target lacks: the other sessions had run all of theirs, and none of it may stay."""
    script = "".join(f"CREATE SCHEMA s{i}; CREATE TABLE s{i}.t (id int PRIMARY KEY, v text);"
                     f"CREATE VIEW s{i}.v AS SELECT * FROM s{i}.t;" for i in range(12))
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(script + "CREATE FUNCTION s11.f() RETURNS int LANGUAGE plpgsql "
                              "AS $$ BEGIN RETURN 1; END $$")
    with admin(pg_target, target_db) as conn:
        conn.execute("DROP EXTENSION plpgsql")
    result = CliRunner().invoke(app, [
        "copy", "--source", pg_source.url(source_db), "--target", pg_target.url(target_db),
        "--jobs", "4", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert "failed at FUNCTION f()" in result.output
    assert "language \"plpgsql\" does not exist" in result.output
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 's%'"
                            " AND nspname ~ '^s[0-9]+$'").fetchone()
        assert left == (0,)


def test_tables_keep_their_access_method_when_pg_restore_would_switch_it_between_entries(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """pg_restore sets default_table_access_method only when it changes, before the entry
    that needs the change: heap, heap2, heap again. Each session sets it for each entry.

    As a superuser on both sides: only one may create an access method (RDS has no way to), and
    the archive creates it on the target."""
    with admin(pg_source, source_db) as conn:
        conn.execute("CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler")
    with admin(pg_source, source_db) as conn:
        conn.execute("""
            CREATE TABLE a (id int PRIMARY KEY);
            CREATE TABLE b (id int PRIMARY KEY) USING heap2;
            CREATE TABLE c (id int PRIMARY KEY);
            CREATE SCHEMA other; CREATE TABLE other.d (id int PRIMARY KEY) USING heap2;
            INSERT INTO a VALUES (1); INSERT INTO b VALUES (2); INSERT INTO c VALUES (3);
            INSERT INTO other.d VALUES (4);""")
    copy.run(Endpoint.parse("source", superuser_url(pg_source, source_db)),
             Endpoint.parse("target", superuser_url(pg_target, target_db)),
             CopyOptions(state_dir=tmp_path / "state", jobs=2), Reporter(quiet=True))
    with admin(pg_target, target_db) as conn:
        methods = dict(conn.execute(
            "SELECT c.oid::regclass::text, a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
            " WHERE c.relkind = 'r' AND c.relnamespace::regnamespace::text IN ('public', 'other')"
        ).fetchall())
    assert methods == {"a": "heap", "b": "heap2", "c": "heap", "other.d": "heap2"}
    assert_same(pg_source.dsn(source_db, user=pg_source.superuser),
                pg_target.dsn(target_db, user=pg_target.superuser))
