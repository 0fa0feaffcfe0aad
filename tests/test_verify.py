"""`rdsmigrate verify` on real clusters: every kind of difference is found and located, equal data
(however awkward its text form, whatever either server's output settings) compares equal.

Both sides are loaded by running the same SQL on each, so these tests do not depend on `copy`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from rdsmigrate import verify
from rdsmigrate.cli import app
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import Selection, VerifyOptions
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.pg

# Values whose text form trips naive comparisons; inserted with different session settings on
# each side (see _load), and read by servers whose database defaults differ (see _skew_settings).
AWKWARD = """
CREATE TABLE awkward (
    id int PRIMARY KEY, f8 float8, f4 float4, n numeric, arr float8[], tags text[],
    j json, jb jsonb, b bytea, ts timestamptz, lts timestamp, d date, iv interval, m money,
    rc regclass);
INSERT INTO awkward VALUES
  (1, 'NaN', 'NaN', 'NaN', '{NaN,Infinity,-Infinity}', '{a,"b c",NULL}',
   '{"b": 1, "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}', '\\x00ff10', '2024-03-10 02:30:00 America/New_York',
   '2024-03-10 02:30:00', '2024-02-29', '1 year 2 mons -3 days 04:05:06.789', 12.34, 'awkward'),
  (2, 'Infinity', '-Infinity', 'Infinity', '{-0,0,1e-300}', '{}', '[]', '{}', '', '2024-06-01 12:00:00+05:30',
   'infinity', '-infinity', '-1 day', -0.5, NULL),
  (3, '-0', '-0', 1.10, '{{1.5,2},{3,4}}', '{"quote\\"d",NULL}', 'null', '"x"', NULL,
   '1999-12-31 23:59:59.999999 Asia/Tokyo', '0044-03-15 12:00:00 BC', '0001-01-01 BC', '0', 0, NULL),
  (4, 0.30000000000000004, 1.1, 1.1, NULL, NULL, '{"é": "ü\\u00e9"}', '{"é": "ü"}', '\\xdeadbeef',
   '2038-01-19 03:14:08 UTC', '2000-01-01', '9999-12-31', '00:00:00.000001', 1000000, NULL),
  (5, 1e308, 3.4e38, 123456789012345678901234567890.000000001, '{NULL}', '{""}', '{"a":1}', '{"a":1}',
   '\\x5c', '2024-10-27 01:30:00 Europe/London', NULL, NULL, NULL, NULL, NULL);
CREATE TABLE keyless (note text, amount numeric);
INSERT INTO keyless VALUES ('dup', 1.0), ('dup', 1.0), ('dup', 1.0), (NULL, NULL), ('', 0);
CREATE SEQUENCE invoice_no START 100;
SELECT nextval('invoice_no'), nextval('invoice_no');
SELECT lo_from_bytea(424242, 'large object bytes'::bytea), lo_from_bytea(424243, ''::bytea);
"""

Found = tuple[str, str, str | None, int | None, int | None]

NUMBERED = """
CREATE TABLE numbered (id bigint PRIMARY KEY, label text, price numeric, ratio float8);
INSERT INTO numbered SELECT g, 'row ' || g, g * 1.10, g / 7.0 FROM generate_series(1, 1000) g;
CREATE SEQUENCE numbered_seq; SELECT setval('numbered_seq', 1000);
SELECT lo_from_bytea(515151, 'invoice scan'::bytea);
"""


def _load(cluster: LocalCluster, db: str, script: str, timezone: str = "UTC") -> None:
    with psycopg.connect(cluster.dsn(db), autocommit=True) as conn:
        # Inserting under another zone stores the same instants: equal data, other input text.
        conn.execute(f"SET TimeZone = '{timezone}'")
        conn.execute(script)


def _skew_settings(cluster: LocalCluster, db: str) -> None:
    """Database defaults that change every text form verify hashes: pinning must override them."""
    with psycopg.connect(cluster.dsn(db), autocommit=True) as conn:
        for setting in ("extra_float_digits = -3", "DateStyle = 'SQL, DMY'",
                        "IntervalStyle = 'sql_standard'", "TimeZone = 'Asia/Kolkata'",
                        "bytea_output = 'escape'",
                        "search_path = pg_catalog"):
            conn.execute(f'ALTER DATABASE "{db}" SET {setting}')


def _exec(cluster: LocalCluster, db: str, statement: str) -> None:
    with psycopg.connect(cluster.dsn(db), autocommit=True) as conn:
        conn.execute(statement)


def _verify(src: LocalCluster, src_db: str, tgt: LocalCluster, tgt_db: str,
            chunk_rows: int = 100, jobs: int = 3, **selection: tuple[str, ...]) -> verify.VerifyReport:
    return verify.run(Endpoint.parse("source", src.dsn(src_db)),
                      Endpoint.parse("target", tgt.dsn(tgt_db)),
                      VerifyOptions(jobs=jobs, chunk_rows=chunk_rows,
                                    selection=Selection(**selection)),
                      Reporter(quiet=True))


@pytest.fixture
def pg18_db(pg18_target: LocalCluster) -> Iterator[str]:
    name = create_database(pg18_target, "tgt18")
    yield name
    drop_database(pg18_target, name)


def test_equal_awkward_values_compare_equal_whatever_the_servers_print(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    _load(pg_source, source_db, AWKWARD, timezone="America/New_York")
    _load(pg_target, target_db, AWKWARD, timezone="Asia/Tokyo")
    _skew_settings(pg_target, target_db)

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=2)

    assert report.differences == []
    assert report.identical
    assert {t.table: t.source_rows for t in report.tables} == {"public.awkward": 5,
                                                               "public.keyless": 5}
    assert next(t for t in report.tables if t.table == "public.awkward").chunks == 3
    assert [(s.name, s.source_last_value) for s in report.sequences] == [("public.invoice_no", 101)]
    assert report.large_objects.source_count == report.large_objects.target_count == 2


def test_equal_data_compares_equal_from_pg15_to_pg18(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, pg18_db: str
) -> None:
    assert (pg_source.major, pg18_target.major) == (15, 18)
    _load(pg_source, source_db, AWKWARD + NUMBERED)
    _load(pg18_target, pg18_db, AWKWARD + NUMBERED, timezone="Pacific/Auckland")
    _skew_settings(pg18_target, pg18_db)

    report = _verify(pg_source, source_db, pg18_target, pg18_db)

    assert report.differences == []
    assert report.identical
    assert report.rows == 1010


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("UPDATE numbered SET label = 'row 250 edited' WHERE id = 250",
         ("rows", "public.numbered", "id >= 201 and < 301", 100, 100)),
        ("DELETE FROM numbered WHERE id = 555",
         ("rows", "public.numbered", "id >= 501 and < 601", 100, 99)),
        ("INSERT INTO numbered VALUES (1500, 'beyond the source max', 1, 1)",
         ("rows", "public.numbered", "id >= 901", 100, 101)),
        ("INSERT INTO numbered VALUES (-7, 'below the source min', 1, 1)",
         ("rows", "public.numbered", "id < 101", 100, 101)),
        ("UPDATE numbered SET id = 2000 WHERE id = 450",
         [("rows", "public.numbered", "id >= 401 and < 501", 100, 99),
          ("rows", "public.numbered", "id >= 901", 100, 101)]),
        # Equal as numbers, different as data: the text is what a migration must carry.
        ("UPDATE numbered SET price = 11.0 WHERE id = 10",
         ("rows", "public.numbered", "id < 101", 100, 100)),
        ("UPDATE numbered SET ratio = '-0' WHERE id = 999",
         ("rows", "public.numbered", "id >= 901", 100, 100)),
        ("UPDATE numbered SET label = NULL WHERE id = 1000",
         ("rows", "public.numbered", "id >= 901", 100, 100)),
        ("SELECT setval('numbered_seq', 1000, false)",
         ("sequence", "public.numbered_seq", None, None, None)),
        ("SELECT lo_unlink(515151)",
         ("missing_large_object", "large objects", None, None, None)),
        ("SELECT lo_put(515151, 0, 'I')",
         ("large_object", "large objects", None, None, None)),
        ("DROP TABLE numbered",
         ("missing_table", "public.numbered", "whole table", None, None)),
        ("CREATE TABLE stray (x int)",
         ("extra_table", "public.stray", "whole table", None, None)),
        ("ALTER TABLE numbered DROP COLUMN ratio",
         ("columns", "public.numbered", None, None, None)),
    ],
    ids=["changed-value", "missing-row", "extra-row-beyond-max", "extra-row-below-min",
         "key-changed", "numeric-scale", "minus-zero", "null", "sequence",
         "missing-large-object", "changed-large-object", "missing-table", "extra-table",
         "dropped-column"],
)
def test_each_difference_is_reported_and_located(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    change: str, expected: Found | list[Found],
) -> None:
    _load(pg_source, source_db, NUMBERED)
    _load(pg_target, target_db, NUMBERED)
    _exec(pg_target, target_db, change)

    report = _verify(pg_source, source_db, pg_target, target_db)

    assert not report.identical
    found = [(d.kind, d.object, d.range, d.source_rows, d.target_rows) for d in report.differences]
    assert found == (expected if isinstance(expected, list) else [expected])
    assert report.model_dump()["identical"] is False


def test_identical_numbered_tables_are_chunked_and_equal(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    """The negative control of the test above: same data, same chunks, nothing reported."""
    _load(pg_source, source_db, NUMBERED)
    _load(pg_target, target_db, NUMBERED)

    report = _verify(pg_source, source_db, pg_target, target_db)

    assert report.identical and report.differences == []
    [table] = report.tables
    assert (table.chunks, table.source_rows, table.target_rows) == (10, 1000, 1000)


def test_text_uuid_composite_keys_locate_the_range_and_keyless_is_compared_whole(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    script = """
        CREATE TABLE by_code (code text PRIMARY KEY, v int);
        INSERT INTO by_code SELECT 'k' || lpad(g::text, 4, '0'), g FROM generate_series(1, 300) g;
        CREATE TABLE by_uuid (id uuid PRIMARY KEY, v int);
        INSERT INTO by_uuid SELECT md5(g::text)::uuid, g FROM generate_series(1, 300) g;
        CREATE TABLE by_pair (a int, b text, v int, PRIMARY KEY (a, b));
        INSERT INTO by_pair SELECT a, 'b' || b, a * b FROM generate_series(1, 20) a, generate_series(0, 9) b;
        CREATE TABLE no_key (v text);
        INSERT INTO no_key SELECT 'same' FROM generate_series(1, 3);
    """
    _load(pg_source, source_db, script)
    _load(pg_target, target_db, script)
    changed_uuid = uuid.UUID(_md5("123"))
    for statement in ("UPDATE by_code SET v = -1 WHERE code = 'k0120'",
                      f"UPDATE by_uuid SET v = -1 WHERE id = '{changed_uuid}'",
                      "DELETE FROM by_pair WHERE a = 7 AND b = 'b3'",
                      "DELETE FROM no_key WHERE ctid = (SELECT min(ctid) FROM no_key)"):
        _exec(pg_target, target_db, statement)

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=50)

    found = {d.object: (d.range, d.source_rows, d.target_rows) for d in report.differences}
    assert len(report.differences) == 4
    assert found["public.by_code"] == ("code >= 'k0101' and < 'k0151'", 50, 50)
    assert found["public.by_pair"] == ("(a, b) >= ('6', 'b0') and < ('11', 'b0')", 50, 49)
    # A duplicate row removed from a keyless table: a sum of row hashes counts every copy.
    assert found["public.no_key"] == ("whole table", 3, 2)
    uuid_range, src_rows, tgt_rows = found["public.by_uuid"]
    assert (src_rows, tgt_rows) == (50, 50)
    bounds = re.fullmatch(r"id(?: >= '(?P<lo>[0-9a-f-]{36})')?(?: and)?(?: < '(?P<hi>[0-9a-f-]{36})')?",
                          uuid_range or "")
    assert bounds is not None and (bounds["lo"] or bounds["hi"]), uuid_range
    assert bounds["lo"] is None or uuid.UUID(bounds["lo"]) <= changed_uuid
    assert bounds["hi"] is None or changed_uuid < uuid.UUID(bounds["hi"])
    chunks = {t.table: t.chunks for t in report.tables}
    assert chunks == {"public.by_code": 6, "public.by_uuid": 6, "public.by_pair": 4,
                      "public.no_key": 1}


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


def test_key_order_that_differs_between_servers_is_a_note_not_a_difference(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    rows = "INSERT INTO mixed SELECT v, ascii(v) FROM unnest('{a,B,c,D,e,F,g,H,i,J}'::text[]) v"
    _load(pg_source, source_db, f'CREATE TABLE mixed (k text COLLATE "C" PRIMARY KEY, v int); {rows}')
    _load(pg_target, target_db,
          f'CREATE TABLE mixed (k text COLLATE "und-x-icu" PRIMARY KEY, v int); {rows}')

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=3)

    assert report.identical, report.differences
    assert any("sort its key differently" in n for n in report.notes)

    _exec(pg_target, target_db, "UPDATE mixed SET v = 0 WHERE k = 'c'")
    assert not _verify(pg_source, source_db, pg_target, target_db, chunk_rows=3).identical


def test_column_order_and_dropped_columns_do_not_make_equal_rows_differ(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    rows = "INSERT INTO {t} (id, a, b) SELECT g, 'v' || g, g * 2 FROM generate_series(1, 50) g;"
    _load(pg_source, source_db, "CREATE TABLE reordered (id int PRIMARY KEY, a text, b int);"
          "CREATE TABLE dropped (id int PRIMARY KEY, a text, b int);"
          + rows.format(t="reordered") + rows.format(t="dropped"))
    _load(pg_target, target_db, "CREATE TABLE reordered (b int, id int PRIMARY KEY, a text);"
          "CREATE TABLE dropped (id int PRIMARY KEY, gone text, a text, b int);"
          "ALTER TABLE dropped DROP COLUMN gone;"
          + rows.format(t="reordered") + rows.format(t="dropped"))

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=20)

    assert report.identical, report.differences
    assert report.rows == 100

    _exec(pg_target, target_db, "UPDATE reordered SET b = 0 WHERE id = 30")
    [difference] = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=20).differences
    assert (difference.object, difference.range) == ("public.reordered", "id >= 21 and < 41")


def test_a_column_named_t_does_not_stand_for_the_row(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    """The chunk queries alias the table as t; a column of that name must not hide the others."""
    script = ("CREATE TABLE tee (id int PRIMARY KEY, t text, v int);"
              "INSERT INTO tee SELECT g, 'same', g FROM generate_series(1, 20) g;")
    _load(pg_source, source_db, script)
    _load(pg_target, target_db, script)
    assert _verify(pg_source, source_db, pg_target, target_db).identical

    _exec(pg_target, target_db, "UPDATE tee SET v = 0 WHERE id = 5")
    report = _verify(pg_source, source_db, pg_target, target_db)
    assert [(d.object, d.range) for d in report.differences] == [("public.tee", "whole table")]


def test_servers_with_different_encodings_compare_the_same_characters(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster
) -> None:
    latin1 = f"latin1_{source_db}"
    _exec(pg_target, "postgres", f"CREATE DATABASE {latin1} ENCODING 'LATIN1' LC_COLLATE 'C' "
                                 "LC_CTYPE 'C' TEMPLATE template0")
    try:
        script = ("CREATE TABLE names (id int PRIMARY KEY, name text);"
                  "INSERT INTO names VALUES (1, 'Müller'), (2, 'Ångström'), (3, 'plain');")
        _load(pg_source, source_db, script)
        _load(pg_target, latin1, script)

        assert _verify(pg_source, source_db, pg_target, latin1).identical

        _exec(pg_target, latin1, "UPDATE names SET name = 'Muller' WHERE id = 1")
        assert not _verify(pg_source, source_db, pg_target, latin1).identical
    finally:
        drop_database(pg_target, latin1)


def test_selection_limits_what_is_compared(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    _load(pg_source, source_db, NUMBERED + "CREATE TABLE skipped (x int); INSERT INTO skipped VALUES (1);")
    _load(pg_target, target_db, NUMBERED + "CREATE TABLE skipped (x int);")

    report = _verify(pg_source, source_db, pg_target, target_db, exclude_tables=("skipped",))

    assert report.identical
    assert [t.table for t in report.tables] == ["public.numbered"]


def test_cli_exit_codes_json_and_no_password(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    _load(pg_source, source_db, NUMBERED)
    _load(pg_target, target_db, NUMBERED)
    args = ["verify", "--source", pg_source.url(source_db), "--target", pg_target.url(target_db),
            "--jobs", "2", "--chunk-rows", "250", "--json"]
    runner = CliRunner()

    same = runner.invoke(app, args)
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["identical"] is True

    _exec(pg_target, target_db, "DELETE FROM numbered WHERE id = 42")
    differs = runner.invoke(app, args)
    assert differs.exit_code == 1, differs.output
    result = json.loads(differs.stdout)
    assert result["identical"] is False
    assert [(d["range"], d["source_rows"], d["target_rows"]) for d in result["differences"]] == [
        ("id < 251", 250, 249)]

    # --quiet silences progress, not the verdict.
    human = runner.invoke(app, [*args[:-1], "--quiet"])
    assert human.exit_code == 1
    assert "DIFFERS public.numbered [id < 251]: source 250 rows, target 249 rows" in human.output
    assert "DIFFERENCES: 1 in 1 object" in human.output

    for run in (same, differs, human):
        for stream in (run.stdout, run.stderr):
            assert pg_source.password not in stream
            assert pg_target.password not in stream


def test_cli_unreadable_table_is_a_user_error_naming_the_grant(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    role = f"reader_{source_db}"
    # Without the large object (also unreadable by the role), the table is the only problem.
    _load(pg_source, source_db, NUMBERED + "SELECT lo_unlink(515151);" + f"CREATE ROLE {role} LOGIN PASSWORD 'secret-{role}';"
          f" REVOKE ALL ON numbered FROM PUBLIC; GRANT SELECT ON numbered_seq TO {role};")
    _load(pg_target, target_db, NUMBERED + "SELECT lo_unlink(515151);")
    source = f"postgresql://{role}:secret-{role}@127.0.0.1:{pg_source.port}/{source_db}?sslmode=disable"
    try:
        run = CliRunner().invoke(app, ["verify", "-s", source, "-t", pg_target.url(target_db)])
        assert run.exit_code == 2, run.output
        assert "cannot read public.numbered" in run.stderr and "GRANT SELECT" in run.stderr
        assert f"secret-{role}" not in run.stderr + run.stdout
    finally:
        _exec(pg_source, source_db, f"DROP OWNED BY {role}; DROP ROLE {role}")
