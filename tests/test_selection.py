"""``--schema``/``--exclude-table``: one meaning for the schema, the rows, sequences, the
publication and ``verify``; a pattern matching nothing is an error; what was left out is said.

The checks read the target's catalog with their own queries (and ``tests.dbcheck``), never the
package's selection code.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from rdsmigrate.cli import app
from rdsmigrate.db.selection import compile_pattern
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster
from tests.conftest import online_target_dsn, online_target_url
from tests.dbcheck import sequence_values, table_fingerprints

pytestmark = pytest.mark.pg


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _args(src: LocalCluster, src_db: str, tgt: LocalCluster, tgt_db: str, state: Path) -> list[str]:
    return ["--source", src.url(src_db), "--target", tgt.url(tgt_db), "--state-dir", str(state)]


def _relations(cluster: LocalCluster, db: str) -> set[str]:
    """Every user table and sequence as ``schema.name``, read straight from pg_class (the
    tool's own ``rdsmigrate`` schema, where ``sync`` keeps its record, left out)."""
    with psycopg.connect(cluster.dsn(db)) as conn:
        rows = conn.execute(
            """SELECT n.nspname || '.' || c.relname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'S')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast',
                                        'rdsmigrate')"""
        ).fetchall()
    return {r[0] for r in rows}


def test_patterns_compile_to_exact_case_sensitive_parts() -> None:
    (schema,) = compile_pattern("App*", qualified=False)
    assert schema.fullmatch("App_1") and not schema.fullmatch("app_1")
    s, n = compile_pattern('"my.schema"."Big ""T"""', qualified=True)
    assert s.fullmatch("my.schema") and n.fullmatch('Big "T"')
    assert not s.fullmatch("myXschema")
    (name,) = compile_pattern("fo?", qualified=True)
    assert name.fullmatch("foo") and not name.fullmatch("fooo") and not name.fullmatch("Foo")
    (literal,) = compile_pattern('"a*b"', qualified=True)
    assert literal.fullmatch("a*b") and not literal.fullmatch("axxb")
    for bad in ('"open', "a.b.c", ".x", "x."):
        with pytest.raises(UserError):
            compile_pattern(bad, qualified=True)


SAME_NAME_IN_TWO_SCHEMAS = """
CREATE SCHEMA app;
CREATE TABLE public.foo (id int PRIMARY KEY, v text);
CREATE TABLE app.foo (id int PRIMARY KEY, v text);
CREATE TABLE app.keep (id int PRIMARY KEY);
CREATE TABLE public.bar (id int);
INSERT INTO public.foo SELECT g, 'p' FROM generate_series(1, 50) g;
INSERT INTO app.foo SELECT g, 'a' FROM generate_series(1, 70) g;
INSERT INTO app.keep SELECT generate_series(1, 30);
INSERT INTO public.bar SELECT generate_series(1, 20);
"""


def test_a_bare_name_is_left_out_in_every_schema_by_the_schema_the_rows_and_verify(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main created ``app.foo`` empty (pg_dump read ``foo`` on its search_path) while the
    rows skipped it, and verify, reading the pattern the rows' way, said identical."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SAME_NAME_IN_TWO_SCHEMAS)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--exclude-table", "foo", "--json")
    assert copied.exit_code == 0, copied.output
    assert _relations(pg_target, target_db) == {"app.keep", "public.bar"}
    assert json.loads(copied.stdout)["result"]["excluded"] == ["app.foo", "public.foo"]
    src, tgt = table_fingerprints(pg_source.dsn(source_db)), table_fingerprints(pg_target.dsn(target_db))
    assert tgt == {k: v for k, v in src.items() if not k.endswith(".foo")}

    checked = _cli("verify", *args[:4], "--exclude-table", "foo", "--json")
    assert checked.exit_code == 0, checked.output
    verdict = json.loads(checked.stdout)["result"]
    assert verdict["identical"] and verdict["excluded"] == ["app.foo", "public.foo"]
    assert sorted(t["table"] for t in verdict["tables"]) == ["app.keep", "public.bar"]
    shown = _cli("verify", *args[:4], "--exclude-table", "foo")
    assert "left out (--exclude-table): app.foo, public.foo" in shown.output

    # Without the exclusion verify must see the two tables the copy left out.
    full = _cli("verify", *args[:4], "--json")
    assert full.exit_code == 1
    assert {d["object"] for d in json.loads(full.stdout)["result"]["differences"]} == {"app.foo", "public.foo"}


def test_a_qualified_name_leaves_out_exactly_that_table_and_schema_selects_by_pattern(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SAME_NAME_IN_TWO_SCHEMAS)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--schema", "ap?", "--exclude-table", "app.foo", "--json")
    assert copied.exit_code == 0, copied.output
    assert _relations(pg_target, target_db) == {"app.keep"}
    assert json.loads(copied.stdout)["result"]["excluded"] == ["app.foo"]
    checked = _cli("verify", *args[:4], "--schema", "app", "--exclude-table", "app.foo")
    assert checked.exit_code == 0, checked.output


HOSTILE_NAMES = """
CREATE SCHEMA "Mixed Case";
CREATE TABLE "Mixed Case"."Big.Table" (id int PRIMARY KEY, "Quote""d" text);
CREATE TABLE "Mixed Case"."small one" (id int);
CREATE TABLE public."Foo" (id int);
CREATE TABLE public.foo (id int);
CREATE TABLE public."we""ird" (id int);
INSERT INTO "Mixed Case"."Big.Table" SELECT g, 'q' FROM generate_series(1, 40) g;
INSERT INTO "Mixed Case"."small one" SELECT generate_series(1, 5);
INSERT INTO public."Foo" SELECT generate_series(1, 7);
INSERT INTO public.foo SELECT generate_series(1, 9);
"""


def test_names_with_spaces_quotes_dots_and_upper_case_are_matched_as_written(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main handed ``Foo`` to pg_dump, which lowercased it: ``foo`` was not created
    while its rows were copied into nothing, and ``Foo`` was created empty."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(HOSTILE_NAMES)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--exclude-table", "Foo", "--exclude-table", '"we""ird"',
                  "--exclude-table", '"Mixed Case"."Big.Table"', "--json")
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)["result"]["excluded"] == ["Mixed Case.Big.Table", "public.Foo",
                                                               'public.we"ird']
    assert _relations(pg_target, target_db) == {"Mixed Case.small one", "public.foo"}
    tgt = table_fingerprints(pg_target.dsn(target_db))
    assert tgt == {k: v for k, v in table_fingerprints(pg_source.dsn(source_db)).items()
                   if k in tgt} and len(tgt) == 2
    checked = _cli("verify", *args[:4], "--exclude-table", "Foo", "--exclude-table", '"we""ird"',
                   "--exclude-table", '"Mixed Case"."Big.Table"')
    assert checked.exit_code == 0, checked.output


def test_excluding_tables_with_identity_and_serial_columns_leaves_out_their_sequences(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main set every sequence, so the excluded table's identity sequence failed the
    copy (exit 3) after all the rows had moved."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE kept (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
            CREATE TABLE skipped_identity (id bigint GENERATED BY DEFAULT AS IDENTITY, v text);
            CREATE TABLE skipped_serial (id serial, v text);
            CREATE SEQUENCE free_standing START 40;
            INSERT INTO kept (v) SELECT 'k' FROM generate_series(1, 12);
            INSERT INTO skipped_identity (v) SELECT 'i' FROM generate_series(1, 5);
            INSERT INTO skipped_serial (v) SELECT 's' FROM generate_series(1, 6);
            SELECT nextval('free_standing');
        """)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--exclude-table", "skipped_*", "--json")
    assert copied.exit_code == 0, copied.output
    report = json.loads(copied.stdout)["result"]
    assert report["excluded"] == ["public.skipped_identity", "public.skipped_serial"]
    assert report["sequences"] == 2
    assert _relations(pg_target, target_db) == {"public.kept", "public.kept_id_seq",
                                                "public.free_standing"}
    src_seqs = sequence_values(pg_source.dsn(source_db))
    assert sequence_values(pg_target.dsn(target_db)) == {
        k: v for k, v in src_seqs.items() if k in ("public.kept_id_seq", "public.free_standing")}
    checked = _cli("verify", *args[:4], "--exclude-table", "skipped_*")
    assert checked.exit_code == 0, checked.output


def test_excluding_a_partitioned_table_leaves_out_its_partitions(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE events (id int, day date) PARTITION BY RANGE (day);
            CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE events_b PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            INSERT INTO events VALUES (1, '2024-05-01'), (2, '2025-05-01');
            CREATE TABLE other (id int); INSERT INTO other VALUES (1);
        """)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--exclude-table", "public.events", "--json")
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)["result"]["excluded"] == ["public.events", "public.events_a",
                                                     "public.events_b"]
    assert _relations(pg_target, target_db) == {"public.other"}


@pytest.mark.parametrize("command", ["copy", "verify", "preflight"])
def test_a_pattern_that_matches_nothing_is_an_error_naming_it_and_nothing_is_written(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path, command: str,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SAME_NAME_IN_TWO_SCHEMAS)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    if command != "copy":
        args = args[:4]
    for option, value in (("--exclude-table", "FOO"), ("--schema", "nosuch")):
        result = _cli(command, *args, option, value)
        assert result.exit_code == 2, result.output
        assert f"{option} '{value}' matches no" in result.output
    assert _relations(pg_target, target_db) == set()


def test_sync_publishes_exactly_the_selected_tables(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SAME_NAME_IN_TWO_SCHEMAS)
        conn.execute("ALTER TABLE public.bar REPLICA IDENTITY FULL")
    args = ["--source", pg_source.url(source_db), "--target", online_target_url(pg_target, target_db),
            "--state-dir", str(tmp_path / "state")]
    synced = _cli("sync", *args, "--exclude-table", "foo", "--json")
    try:
        assert synced.exit_code == 0, synced.output
        with psycopg.connect(pg_source.dsn(source_db)) as conn:
            published = {f"{s}.{t}" for s, t in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables "
                "WHERE pubname LIKE 'rdsmigrate%'").fetchall()}
        assert published == {"app.keep", "public.bar"}
        assert _relations(pg_target, target_db) == {"app.keep", "public.bar"}
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
            conn.execute("INSERT INTO app.keep SELECT generate_series(31, 40);"
                         "INSERT INTO app.foo VALUES (1000, 'never replicated')")
        # Cutover counts the selected tables only; the excluded ones are not on the target.
        cut = _cli("cutover", *args, "--json", "--timeout", "30")
        assert cut.exit_code == 0, cut.output
        assert json.loads(cut.stdout)["result"]["tables_checked"] == 2
        with psycopg.connect(online_target_dsn(pg_target, target_db)) as conn:
            assert conn.execute("SELECT count(*) FROM app.keep").fetchone() == (40,)
    finally:
        _cli("abort", *args)


def test_a_schema_with_a_space_and_upper_case_is_selected_as_written(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main handed ``Mixed Case`` to pg_dump raw: lowercased, it named no schema."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(HOSTILE_NAMES)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    copied = _cli("copy", *args, "--schema", "Mixed Case")
    assert copied.exit_code == 0, copied.output
    assert _relations(pg_target, target_db) == {"Mixed Case.Big.Table", "Mixed Case.small one"}
    checked = _cli("verify", *args[:4], "--schema", "Mixed Case")
    assert checked.exit_code == 0, checked.output


def test_views_on_an_excluded_table_are_left_out_and_a_foreign_key_to_one_is_refused(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """Today's main dumped the views and failed the pre-data restore on them."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE customers (id int PRIMARY KEY, name text);
            CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers);
            CREATE TABLE scratch (id int, note text);
            CREATE TABLE kept (id int PRIMARY KEY);
            INSERT INTO customers VALUES (1, 'a'); INSERT INTO orders VALUES (1, 1);
            INSERT INTO scratch VALUES (1, 'x'); INSERT INTO kept VALUES (1);
            CREATE VIEW scratch_v AS SELECT * FROM scratch;
            CREATE VIEW scratch_vv AS SELECT id FROM scratch_v;
            CREATE MATERIALIZED VIEW scratch_mv AS SELECT count(*) FROM scratch;
            CREATE VIEW kept_v AS SELECT * FROM kept;
        """)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")
    refused = _cli("copy", *args, "--exclude-table", "customers")
    assert refused.exit_code == 2, refused.output
    assert "public.orders (orders_customer_fkey)" in refused.output
    assert _relations(pg_target, target_db) == set()

    copied = _cli("copy", *args, "--exclude-table", "scratch", "--json")
    assert copied.exit_code == 0, copied.output
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        views = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('v', 'm') "
            "AND relnamespace = 'public'::regnamespace").fetchall()}
    assert views == {"kept_v"}
    assert json.loads(copied.stdout)["result"]["excluded"] == [
        "public.scratch", "public.scratch_mv", "public.scratch_v", "public.scratch_vv"]
    checked = _cli("verify", *args[:4], "--exclude-table", "scratch")
    assert checked.exit_code == 0, checked.output
