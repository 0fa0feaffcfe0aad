"""`rdsmigrate copy` on real clusters: completeness, splitting, everything besides rows."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner, Result

from rdsmigrate import copy
from rdsmigrate import schema as schema_module
from rdsmigrate.cli import app
from rdsmigrate.copy import indexes as indexes_module
from rdsmigrate.copy import plan as plan_module
from rdsmigrate.copy import stream as stream_module
from rdsmigrate.db.catalog import Table
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions
from tests.conftest import admin, online_target_dsn, online_target_url
from tests.dbcheck import assert_same, table_fingerprints

pytestmark = pytest.mark.pg


def _run_copy(pg_source: LocalCluster, source_db: str, target: LocalCluster, target_db: str,
              tmp_path: Path, **options: object) -> copy.CopyReport:
    opts = CopyOptions(state_dir=tmp_path / "state", **options)  # type: ignore[arg-type]
    return copy.run(Endpoint.parse("source", pg_source.url(source_db)),
                    Endpoint.parse("target", target.url(target_db)), opts, Reporter(quiet=True))


@pytest.mark.parametrize("tid_range_scans", [True, False], ids=["ctid-ranges", "pre-14-key-ranges"])
def test_split_tables_arrive_complete_with_no_row_lost_or_doubled(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, tid_range_scans: bool,
) -> None:
    if not tid_range_scans:
        # What a PostgreSQL 13 source gets: key ranges where there is an integer key, else none.
        monkeypatch.setattr(plan_module, "TID_RANGE_SCAN_MAJOR", 10**6)
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        # Integer keys with gaps, negatives and the extremes of bigint: range edges must hold.
        conn.execute("""
            CREATE TABLE keyed (id bigint PRIMARY KEY, payload text);
            INSERT INTO keyed SELECT g * 3 - 60000, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
            INSERT INTO keyed VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max');
            CREATE TABLE heap_only (a text, b int);
            INSERT INTO heap_only SELECT md5(g::text), g FROM generate_series(1, 40000) g;
            DELETE FROM heap_only WHERE b % 7 = 0;
        """)
    report = _run_copy(pg_source, source_db, pg_target, target_db, tmp_path, jobs=3,
                       split_bytes=300_000)
    methods = {t.table: t.method for t in report.tables}
    assert ("ranges by ctid" if tid_range_scans else "ranges by id") in methods["public.keyed"]
    assert methods["public.heap_only"] == ("binary, 10 ranges by ctid" if tid_range_scans
                                           else "binary")
    fingerprints = assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    assert fingerprints["public.keyed"][0] == 40002
    assert fingerprints["public.heap_only"][0] == 40000 - 40000 // 7
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        assert conn.execute("SELECT count(DISTINCT b) FROM heap_only").fetchone() == (34286,)


def test_big_tables_builds_run_at_most_one_per_job_at_once(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four builds of big tables at once (two builder threads a job) oversubscribed two cores
    with their parallel workers; the target's own view of its sessions counts the builds."""
    monkeypatch.setattr(indexes_module, "SEPARATE_BUILDS_BYTES", 0)  # every table is big
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        for t in range(3):
            conn.execute(f"""
                CREATE TABLE wide{t} (id int PRIMARY KEY, a text, b text, c text);
                INSERT INTO wide{t} SELECT g, md5(g::text), md5((g * 7)::text),
                       md5((g * 13)::text) FROM generate_series(1, 150000) g;
                CREATE INDEX ON wide{t} (a); CREATE INDEX ON wide{t} (b);
                CREATE INDEX ON wide{t} (c, a)""")
    most, stop = [0], threading.Event()

    def watch() -> None:
        with admin(pg_target, target_db) as conn:
            while not stop.is_set():
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND state = 'active'"
                    " AND query ~ 'CREATE (UNIQUE )?INDEX'").fetchone() or (0,)
                most[0] = max(most[0], n)
                time.sleep(0.003)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _run_copy(pg_source, source_db, pg_target, target_db, tmp_path, jobs=2)
    finally:
        stop.set()
        watcher.join()
    assert 1 <= most[0] <= 2, most[0]
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))


def test_only_a_table_of_more_than_one_and_a_half_shares_is_split_and_whole_tables_load_frozen(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plan_module, "MIN_SPLIT_BYTES", 8192)
    # Tables this small are normally batched without FREEZE (stream.FREEZE_MIN_BYTES).
    monkeypatch.setattr(stream_module, "FREEZE_MIN_BYTES", 0)
    # Every index its own build, as for a big table: they run side by side and must all arrive.
    monkeypatch.setattr(indexes_module, "SEPARATE_BUILDS_BYTES", 0)
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE big (id int PRIMARY KEY, a text NOT NULL UNIQUE, b int, c text);
            INSERT INTO big SELECT g, md5(g::text), g % 97, repeat('x', 50) FROM generate_series(1, 20000) g;
            CREATE INDEX big_b ON big (b);
            CREATE INDEX big_c ON big (c, b);
            ALTER TABLE big ADD CONSTRAINT big_bc UNIQUE (b, id) DEFERRABLE INITIALLY DEFERRED;
            ALTER TABLE big ADD CONSTRAINT big_cov UNIQUE (a) INCLUDE (b);
            ALTER TABLE big CLUSTER ON big_pkey;
            ALTER TABLE big REPLICA IDENTITY USING INDEX big_a_key;
            CREATE TABLE small (id int PRIMARY KEY, big_id int REFERENCES big);
            INSERT INTO small SELECT g, g FROM generate_series(1, 3000) g;
            CREATE TABLE smaller (v text);
            INSERT INTO smaller SELECT g::text FROM generate_series(1, 500) g;
        """)
        sizes = dict(conn.execute("SELECT relname, pg_relation_size(oid) FROM pg_class "
                                  "WHERE relname IN ('big', 'small', 'smaller')").fetchall())
    share = sum(sizes.values()) // 2
    assert sizes["big"] > plan_module.SPLIT_ABOVE_SHARES * share  # the premise of the test
    report = _run_copy(pg_source, source_db, pg_target, target_db, tmp_path, jobs=2)
    methods = {t.table: t.method for t in report.tables}
    assert methods == {"public.big": "binary, 2 ranges by ctid", "public.small": "binary",
                       "public.smaller": "binary"}
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    # Keys built as unique indexes and attached: same names, kinds, deferral, clustering and
    # replica identity as on the source; the INCLUDE one (not attachable) kept pg_dump's form.
    keys = ("SELECT c.conname, c.contype, c.condeferrable, c.condeferred, i.indisclustered, "
            "i.indisreplident, pg_get_indexdef(c.conindid) FROM pg_constraint c "
            "JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conrelid = 'big'::regclass "
            "ORDER BY 1")
    indexes = "SELECT indexname FROM pg_indexes WHERE tablename = 'big' ORDER BY 1"
    with psycopg.connect(pg_source.dsn(source_db)) as src, \
            psycopg.connect(pg_target.dsn(target_db)) as tgt:
        assert tgt.execute(keys).fetchall() == src.execute(keys).fetchall()
        assert tgt.execute(indexes).fetchall() == src.execute(indexes).fetchall()
    # pg_visibility is not a trusted extension: inspecting the result needs the superuser.
    with admin(pg_target, target_db) as conn:
        conn.execute("CREATE EXTENSION pg_visibility")
        # Too small for autovacuum to have run: frozen pages come from COPY FREEZE alone.
        frozen = dict(conn.execute(
            "SELECT relname, (SELECT all_frozen FROM pg_visibility_map_summary(oid)) = "
            "pg_relation_size(oid) / current_setting('block_size')::int FROM pg_class "
            "WHERE relname IN ('big', 'small', 'smaller')").fetchall())
        # A split table is loaded by several transactions: no FREEZE for it.
        assert frozen == {"big": False, "small": True, "smaller": True}


def _table(name: str, size: int) -> Table:
    return Table(oid=0, schema="public", name=name, columns=(), key=(), key_types=(),
                 replica_identity="d", has_replica_identity_index=False, has_primary_key=False,
                 partition_of=None, est_rows=0, bytes=size)


def test_two_big_tables_of_similar_size_are_not_split_and_go_biggest_first() -> None:
    """512 and 300 MB on 2 jobs (the benchmark): 1.26 shares is left whole, and with no table
    to split the plan needs no database at all."""
    mib = 1 << 20
    tables = [_table("small", 1 * mib), _table("payments", 300 * mib), _table("accounts", 512 * mib)]
    units = plan_module.plan(None, tables, jobs=2, split_bytes=None, source_major=15)  # type: ignore[arg-type]
    assert [(u.table.name, u.of) for u in units] == [("accounts", 1), ("payments", 1), ("small", 1)]


def test_everything_besides_rows_is_carried_over(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(f"""
            CREATE SCHEMA app;
            CREATE TABLE app.items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    price numeric(10,2), doubled numeric GENERATED ALWAYS AS (price * 2) STORED);
            INSERT INTO app.items (price) SELECT g / 10.0 FROM generate_series(1, 500) g;
            CREATE SEQUENCE app.standalone START 100;
            SELECT nextval('app.standalone'), nextval('app.standalone');
            CREATE SEQUENCE app.never_called;
            CREATE TABLE app.parent (id int, kind text);
            CREATE TABLE app.child (extra text) INHERITS (app.parent);
            INSERT INTO app.parent VALUES (1, 'p');
            INSERT INTO app.child VALUES (2, 'c', 'x');
            CREATE TABLE app.audited (id int PRIMARY KEY, touched int DEFAULT 0);
            CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN NEW.touched := NEW.touched + 1; RETURN NEW; END $$;
            CREATE TRIGGER t BEFORE INSERT ON app.audited FOR EACH ROW EXECUTE FUNCTION app.touch();
            INSERT INTO app.audited SELECT g FROM generate_series(1, 10) g;
            CREATE MATERIALIZED VIEW app.totals AS SELECT count(*) AS n, sum(price) AS s FROM app.items;
            COMMENT ON TABLE app.items IS 'things we sell';
            SELECT lo_from_bytea(4242, 'large object body');
            ALTER DATABASE "{source_db}" SET search_path = app, "$user", public;
            ALTER DATABASE "{source_db}" SET work_mem = '8MB';
            COMMENT ON DATABASE "{source_db}" IS 'the shop';
        """)
    report = _run_copy(pg_source, source_db, pg_target, target_db, tmp_path, jobs=2)
    assert report.sequences == 3 and report.large_objects == 1
    assert report.materialized_views == 1 and report.database_settings == 2
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as conn:
        # Triggers were created after the load, so rows arrived as they were, not re-touched.
        assert conn.execute("SELECT max(touched) FROM app.audited").fetchone() == (1,)
        assert conn.execute("SELECT nextval('app.standalone')").fetchone() == (102,)
        assert conn.execute("SELECT nextval('app.never_called')").fetchone() == (1,)
        assert conn.execute("SELECT lo_get(4242)").fetchone() == (b"large object body",)
        assert conn.execute("SHOW search_path").fetchone() == ('app, "$user", public',)
        assert conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            "WHERE datname = current_database()").fetchone() == ("the shop",)
        # The identity sequence continues where the source's stopped.
        conn.execute("INSERT INTO app.items (price) VALUES (1)")
        assert conn.execute("SELECT max(id) FROM app.items").fetchone() == (501,)


def test_cli_copy_writes_a_json_report_and_never_prints_the_password(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text); "
                     "INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g")
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, [
        "copy", "--source", pg_source.url(source_db), "--target", pg_target.url(target_db),
        "--jobs", "2", "--report", str(report_path), "--state-dir", str(tmp_path / "s"), "--json",
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["result"]
    on_disk = json.loads(report_path.read_text())
    assert out["rows"] == on_disk["rows"] == 1000
    assert on_disk["tables"][0]["table"] == "public.t"
    assert {"rows", "bytes", "seconds", "method"} <= on_disk["tables"][0].keys()
    for text in (result.stdout, result.stderr, report_path.read_text()):
        assert pg_source.password not in text and pg_target.password not in text
    assert table_fingerprints(pg_source.dsn(source_db)) == table_fingerprints(pg_target.dsn(target_db))


def test_without_replication_privilege_copy_falls_back_to_an_exported_snapshot(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    """RDS leaves logical replication off by default: a plain copy must still work, as
    consistent, and say that no online sync can follow it."""
    role = f"plain_{source_db}"
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOREPLICATION PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(pg_source.password)))
        conn.execute(f'GRANT SELECT ON t TO "{role}"')
    try:
        source = Endpoint.parse("source", pg_source.url(source_db, user=role))
        report = copy.run(source, Endpoint.parse("target", pg_target.url(target_db)),
                          CopyOptions(state_dir=tmp_path), Reporter(quiet=True))
        assert report.snapshot == "pg_export_snapshot()"
        assert any("no online sync can follow" in note for note in report.notes)
        assert report.rows == 100
    finally:
        # The master user may not drop what another role owns (PostgreSQL 15: not a member).
        with admin(pg_source, source_db) as conn:
            conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_the_tools_own_publications_and_any_subscription_stay_on_the_source(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); "
                     "CREATE PUBLICATION rdsmigrate_feedbeef FOR TABLE t; "
                     "CREATE PUBLICATION app_events FOR TABLE t")
    try:
        _run_copy(pg_source, source_db, pg_target, target_db, tmp_path)
        with psycopg.connect(pg_target.dsn(target_db)) as conn:
            names = [r[0] for r in conn.execute("SELECT pubname FROM pg_publication ORDER BY 1")]
        assert names == ["app_events"]
    finally:
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
            conn.execute("DROP PUBLICATION rdsmigrate_feedbeef, app_events")


ZERO_COLUMNS = """
CREATE TABLE nothing ();
INSERT INTO nothing SELECT FROM generate_series(1, 30000);
CREATE TABLE only_generated (g int GENERATED ALWAYS AS (7) STORED);
INSERT INTO only_generated SELECT FROM generate_series(1, 5);
CREATE TABLE all_dropped (a int, b text);
INSERT INTO all_dropped SELECT g, 'x' FROM generate_series(1, 4) g;
ALTER TABLE all_dropped DROP COLUMN a, DROP COLUMN b;
"""


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
                for name in ("nothing", "only_generated", "all_dropped")}


def test_tables_without_columns_to_copy_keep_their_rows_through_copy_and_sync(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """``COPY t () TO STDOUT`` is a syntax error: today's main failed on such a table, whole or
    split into ranges; each row still counts (one empty line each)."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(ZERO_COLUMNS)
    report = _run_copy(pg_source, source_db, pg_target, target_db, tmp_path, jobs=2,
                       split_bytes=200_000)
    methods = {t.table: t.method for t in report.tables}
    assert "ranges by ctid" in methods["public.nothing"]
    assert _counts(pg_target.dsn(target_db)) == {"nothing": 30000, "only_generated": 5,
                                                 "all_dropped": 4}
    args = ["--source", pg_source.url(source_db), "--target", pg_target.url(target_db)]
    checked = CliRunner().invoke(app, ["verify", *args, "--json"])
    assert checked.exit_code == 0, checked.output
    with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as conn:
        conn.execute("DELETE FROM nothing WHERE ctid IN (SELECT ctid FROM nothing LIMIT 1)")
    differs = CliRunner().invoke(app, ["verify", *args, "--json"])
    assert differs.exit_code == 1
    assert [d["object"] for d in json.loads(differs.stdout)["result"]["differences"]] == ["public.nothing"]


@pytest.mark.slow
def test_sync_streams_rows_of_a_table_without_columns(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(ZERO_COLUMNS)
    args = ["--source", pg_source.url(source_db), "--target", online_target_url(pg_target, target_db),
            "--state-dir", str(tmp_path / "state")]
    synced = CliRunner().invoke(app, ["sync", *args, "--replica-identity-full", "--json"])
    assert synced.exit_code == 0, synced.output
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("INSERT INTO nothing SELECT FROM generate_series(1, 10);"
                     "INSERT INTO only_generated DEFAULT VALUES")
    cut = CliRunner().invoke(app, ["cutover", *args, "--json", "--timeout", "30"])
    assert cut.exit_code == 0, cut.output
    assert _counts(online_target_dsn(pg_target, target_db)) == {"nothing": 30010, "only_generated": 6,
                                                 "all_dropped": 4}


def _lo_metadata(dsn: str) -> dict[int, tuple[str, str | None, list[tuple[str, str, str, bool]] | None]]:
    """OID -> (owner, comment, ACL as (grantor, grantee, privilege, grantable) or None)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT m.oid::int8, o.rolname, obj_description(m.oid, 'pg_largeobject'),
                      CASE WHEN m.lomacl IS NOT NULL THEN
                        (SELECT coalesce(array_agg(array[g.rolname::text,
                                  coalesce(e.rolname::text, 'PUBLIC'), a.privilege_type,
                                  a.is_grantable::text] ORDER BY 1), '{}')
                           FROM aclexplode(m.lomacl) a JOIN pg_roles g ON g.oid = a.grantor
                           LEFT JOIN pg_roles e ON e.oid = a.grantee) END
                 FROM pg_largeobject_metadata m JOIN pg_roles o ON o.oid = m.lomowner"""
        ).fetchall()
    return {oid: (owner, comment, None if acl is None else
                  sorted((g, e, p, b == "true") for g, e, p, b in acl))
            for oid, owner, comment, acl in rows}


@pytest.mark.parametrize("roles", [True, False], ids=["with-roles", "without-roles"])
def test_large_objects_arrive_with_comments_and_with_roles_their_owners_and_grants(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path, roles: bool,
) -> None:
    """Today's main recreated only the content (lo_create + lo_put)."""
    owner, reader = f"lo_owner_{source_db}", f"lo_reader_{source_db}"
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(f"""
            CREATE ROLE "{owner}"; CREATE ROLE "{reader}"; GRANT "{owner}" TO CURRENT_USER;
            SELECT lo_from_bytea(5001, 'owned and shared'), lo_from_bytea(5002, 'commented'),
                   lo_from_bytea(5003, 'read only, even for its owner'), lo_from_bytea(5004, 'plain');
            ALTER LARGE OBJECT 5001 OWNER TO "{owner}";
            COMMENT ON LARGE OBJECT 5001 IS 'scan of the contract';
            COMMENT ON LARGE OBJECT 5002 IS 'it''s quoted';
            GRANT SELECT ON LARGE OBJECT 5001 TO "{reader}" WITH GRANT OPTION;
            GRANT UPDATE ON LARGE OBJECT 5001 TO PUBLIC;
            REVOKE UPDATE ON LARGE OBJECT 5003 FROM CURRENT_USER;
        """)
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        roles_before = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
        target_user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    try:
        target_url = pg_target.url(target_db)
        report = copy.run(Endpoint.parse("source", pg_source.url(source_db)),
                          Endpoint.parse("target", target_url),
                          CopyOptions(state_dir=tmp_path / "state", roles=roles),
                          Reporter(quiet=True))
        assert report.large_objects == 4
        source, target = _lo_metadata(pg_source.dsn(source_db)), _lo_metadata(pg_target.dsn(target_db))
        if roles:
            assert target == source
        else:
            assert {oid: m[1] for oid, m in target.items()} == {oid: m[1] for oid, m in source.items()}
            assert {m[0] for m in target.values()} == {target_user}
            assert {str(m[2]) for m in target.values()} == {"None"}
        args = ["--source", pg_source.url(source_db), "--target", target_url]
        if roles:
            same = CliRunner().invoke(app, ["verify", *args, "--roles"])
            assert same.exit_code == 0, same.output
        with admin(pg_target, target_db) as conn:
            conn.execute("COMMENT ON LARGE OBJECT 5002 IS 'changed';"
                         "GRANT SELECT ON LARGE OBJECT 5004 TO PUBLIC")
        differs = CliRunner().invoke(app, ["verify", *args, "--json"])
        assert differs.exit_code == 1, differs.output
        assert [d["kind"] for d in json.loads(differs.stdout)["result"]["differences"]] == ["large_object_comment"]
        if roles:
            with admin(pg_target, target_db) as conn:
                conn.execute(f'ALTER LARGE OBJECT 5002 OWNER TO "{owner}"')
            strict = CliRunner().invoke(app, ["verify", *args, "--roles", "--json"])
            assert strict.exit_code == 1, strict.output
            found = {(d["kind"], d["detail"]) for d in json.loads(strict.stdout)["result"]["differences"]}
            assert found == {("large_object_comment", "1 comment differs: OID 5002"),
                             ("large_object_owner", "1 owner differs: OID 5002"),
                             ("large_object_acl", "1 grants differ: OID 5004")}
    finally:
        with admin(pg_target, target_db) as conn:  # whoever created the roles, they go
            conn.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
            for role in {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")} - roles_before:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
            conn.execute(f'SELECT lo_unlink(oid) FROM pg_largeobject_metadata; '
                         f'DROP ROLE "{owner}"; DROP ROLE "{reader}"')


def _everything(dsn: str) -> dict[str, object]:
    """What a database holds, read with this test's own queries: a failed copy must not add any."""
    with psycopg.connect(dsn) as conn:
        def names(query: str) -> list[str]:
            return sorted(r[0] for r in conn.execute(query).fetchall())

        user = "NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        return {
            "schemas": names(f"SELECT nspname FROM pg_namespace WHERE nspname {user}"),
            "relations": names("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN "
                               f"pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname {user}"),
            "functions": names("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
                               f"ON n.oid = p.pronamespace WHERE n.nspname {user}"),
            "types": names("SELECT t.oid::regtype::text FROM pg_type t JOIN pg_namespace n "
                           f"ON n.oid = t.typnamespace WHERE n.nspname {user}"),
            "settings": names("SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s "
                              "JOIN pg_database d ON d.oid = s.setdatabase "
                              "WHERE d.datname = current_database()"),
            "comment": names("SELECT coalesce(shobj_description(oid, 'pg_database'), '') "
                             "FROM pg_database WHERE datname = current_database()"),
        }


def _copy_refused_leaving_target_as_it_was(pg_source: LocalCluster, source_db: str,
                                           pg_target: LocalCluster, target_db: str,
                                           tmp_path: Path) -> Result:
    before = _everything(pg_target.dsn(target_db))
    result = CliRunner().invoke(app, [
        "copy", "--source", pg_source.url(source_db), "--target", pg_target.url(target_db),
        "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    assert _everything(pg_target.dsn(target_db)) == before
    return result


def test_a_failed_pre_data_restore_exits_2_and_leaves_the_target_exactly_as_it_was(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main restored pre-data entry by entry: one failure left every other table, view
    and function behind although it exited 2. Here the target lacks plpgsql, which preflight
    does not look for, so the function's entry fails in the middle of the restore."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(f"""
            CREATE SCHEMA app;
            CREATE TYPE app.mood AS ENUM ('ok', 'bad');
            CREATE TABLE app.a (id int PRIMARY KEY, m app.mood);
            CREATE TABLE public.z (id serial, v text);
            INSERT INTO app.a VALUES (1, 'ok');
            CREATE VIEW app.v AS SELECT * FROM app.a;
            CREATE FUNCTION app.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
            CREATE FUNCTION app.g() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;
            ALTER DATABASE "{source_db}" SET work_mem = '8MB';
            COMMENT ON DATABASE "{source_db}" IS 'the source';
        """)
    with admin(pg_target, target_db) as conn:  # plpgsql belongs to the superuser
        conn.execute("DROP EXTENSION plpgsql")
    result = _copy_refused_leaving_target_as_it_was(pg_source, source_db, pg_target, target_db,
                                                    tmp_path)
    assert "language \"plpgsql\" does not exist" in result.output
    assert "nothing was restored" in result.output


def test_a_database_setting_the_target_refuses_exits_2_before_any_schema_is_written(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """A superuser-only setting on the source (set there by its superuser) that the target's
    master user may not set: today's main restored the whole pre-data schema first, then failed
    with exit 3. The settings now go in one transaction that commits only after the restore."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"
                     "CREATE VIEW v AS SELECT * FROM t")
        conn.execute(f'ALTER DATABASE "{source_db}" SET work_mem = \'8MB\'')
    with admin(pg_source, source_db) as conn:  # PGC_SUSET: only a superuser may set it
        conn.execute(f'ALTER DATABASE "{source_db}" SET log_min_duration_statement = 0')
    result = _copy_refused_leaving_target_as_it_was(pg_source, source_db, pg_target, target_db,
                                                    tmp_path)
    assert "log_min_duration_statement" in result.output


def test_a_schema_too_big_for_the_targets_lock_table_is_restored_in_pieces_and_says_so(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One transaction of 10,000 tables runs out of locks on a default target (measured at
    table 5,522): the copy must still work, in pieces, and say what that gives up."""
    monkeypatch.setattr(schema_module, "LOCKS_PER_RELATION", 10**9)
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');"
                     "CREATE VIEW v AS SELECT * FROM t")
    report = _run_copy(pg_source, source_db, pg_target, target_db, tmp_path)
    assert any("several transactions" in note for note in report.notes)
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
