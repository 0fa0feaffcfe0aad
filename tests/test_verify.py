"""`rdsmigrate verify` on real clusters: every kind of difference is found and located, equal data
(however awkward its text form, whatever either server's output settings) compares equal.

Both sides are loaded by running the same SQL on each, so these tests do not depend on `copy`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Literal

import psycopg
import pytest
from typer.testing import CliRunner

from rdsmigrate import verify
from rdsmigrate.cli import app
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import Selection, VerifyOptions
from rdsmigrate.verify import rowhash
from tests.conftest import admin, create_database, drop_database

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
            chunk_rows: int = 100, jobs: int = 3, checksum: Literal["auto", "md5"] = "auto",
            **selection: tuple[str, ...]) -> verify.VerifyReport:
    return verify.run(Endpoint.parse("source", src.dsn(src_db)),
                      Endpoint.parse("target", tgt.dsn(tgt_db)),
                      VerifyOptions(jobs=jobs, chunk_rows=chunk_rows, checksum=checksum,
                                    selection=Selection(**selection)),
                      Reporter(quiet=True))


def _fast(report: verify.VerifyReport) -> bool:
    return (report.checksum, report.checksum_reason) == ("hash_record_extended", None)


@pytest.fixture
def pg18_db(pg18_target: LocalCluster) -> Iterator[str]:
    name = create_database(pg18_target, "tgt18")
    yield name
    drop_database(pg18_target, name)


@pytest.mark.parametrize("chunked", [False, True], ids=["whole-first", "chunked"])
def test_equal_awkward_values_compare_equal_whatever_the_servers_print(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    monkeypatch: pytest.MonkeyPatch, chunked: bool,
) -> None:
    if chunked:
        # As for a table too big for one worker: key ranges from the start.
        monkeypatch.setattr(verify, "CHUNK_ABOVE_SHARES", 0)
    _load(pg_source, source_db, AWKWARD, timezone="America/New_York")
    _load(pg_target, target_db, AWKWARD, timezone="Asia/Tokyo")
    _skew_settings(pg_target, target_db)

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=2)

    assert report.differences == []
    assert report.identical
    assert _fast(report)
    assert {t.table: t.source_rows for t in report.tables} == {"public.awkward": 5,
                                                               "public.keyless": 5}
    # Equal tables are checked in one pass each unless big enough to be shared by workers.
    assert next(t for t in report.tables if t.table == "public.awkward").chunks == (3 if chunked else 1)
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
    assert _fast(report)
    assert report.rows == 1010

    _exec(pg18_target, pg18_db, "UPDATE public.awkward SET ts = ts + interval '1 microsecond' WHERE id = 4")
    changed = _verify(pg_source, source_db, pg18_target, pg18_db)
    assert _fast(changed)
    assert [(d.object, d.detail) for d in changed.differences] == [
        ("public.awkward", "same count, contents differ")]


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


# A column for each way a value enters the fast row hash: as itself (typed) or as its text.
KINDS = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE DOMAIN code AS varchar(8);
CREATE TABLE kinds (
    id int PRIMARY KEY, n numeric, f float8, jb jsonb, j json, mood mood, ch char(4), u uuid,
    ts timestamptz, lts timestamp, d date, tm time, b bytea, t text, c code, i2 int2, i8 int8,
    flag bool, arr int4[], iv interval);
INSERT INTO kinds VALUES
  (1, 1.0, 0, '{"a": 1.0}', '{"a": 1.0}', 'calm', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2024-03-10 12:00:00.000001+00', '2024-03-10 12:00:00', '2024-02-29', '23:59:59', '\\x00ff',
   '', 'x1', 7, 70, true, '{1,2}', '1 day'),
  (2, 2.5, 1.5, '{"a": [1, 2]}', '[]', 'busy', 'cd', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   'infinity', '1999-12-31 23:59:59.999999', '2000-01-01', '00:00:00', '', 'Grüße', 'x2', -8, 80,
   false, '{}', '-1 mons');
"""


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE kinds SET n = 1.00 WHERE id = 1",
        "UPDATE kinds SET f = '-0' WHERE id = 1",
        """UPDATE kinds SET jb = '{"a": 1.00}' WHERE id = 1""",
        """UPDATE kinds SET j = '{"a":1.0}' WHERE id = 1""",
        "UPDATE kinds SET mood = 'busy' WHERE id = 1",
        "UPDATE kinds SET ch = 'ac' WHERE id = 1",
        "UPDATE kinds SET u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12' WHERE id = 1",
        "UPDATE kinds SET ts = ts + interval '1 microsecond' WHERE id = 1",
        "UPDATE kinds SET lts = lts - interval '1 microsecond' WHERE id = 2",
        "UPDATE kinds SET d = d + 1 WHERE id = 1",
        "UPDATE kinds SET tm = '23:59:58.999999' WHERE id = 1",
        "UPDATE kinds SET b = '\\x00fe' WHERE id = 1",
        "UPDATE kinds SET t = NULL WHERE id = 1",
        "UPDATE kinds SET t = 'grüße' WHERE id = 2",
        "UPDATE kinds SET c = 'X1' WHERE id = 1",
        "UPDATE kinds SET i2 = 8 WHERE id = 2",
        "UPDATE kinds SET flag = NOT flag WHERE id = 1",
        "UPDATE kinds SET arr = '{1,3}' WHERE id = 1",
        # Equal as intervals (and so equal in interval's own hash), different as data.
        "UPDATE kinds SET iv = '24 hours' WHERE id = 1",
        # Each row changes, each column keeps its values: a sum of per-value hashes would not see it.
        "UPDATE kinds SET i8 = 150 - i8",
        "UPDATE kinds SET t = CASE id WHEN 1 THEN 'Grüße' ELSE '' END",
    ],
    ids=["numeric-scale", "float-minus-zero", "jsonb-number", "json-text", "enum", "bpchar",
         "uuid", "timestamptz-microsecond", "timestamp-microsecond", "date", "time", "bytea-byte",
         "null-not-empty", "text-case", "domain", "int2", "bool", "array", "interval-text",
         "int8-swapped-between-rows", "text-swapped-between-rows"],
)
def test_the_fast_checksum_finds_each_kind_of_changed_value(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, change: str
) -> None:
    _load(pg_source, source_db, KINDS)
    _load(pg_target, target_db, KINDS)
    same = _verify(pg_source, source_db, pg_target, target_db)
    assert same.identical and _fast(same), same.differences

    _exec(pg_target, target_db, change)
    report = _verify(pg_source, source_db, pg_target, target_db)

    assert _fast(report)
    assert [(d.kind, d.object, d.range, d.source_rows, d.target_rows) for d in report.differences] == [
        ("rows", "public.kinds", "whole table", 2, 2)]


def test_case_under_a_nondeterministic_collation_is_a_difference(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    """Hashed under its own collation, 'Alpha' and 'alpha' would be equal: the ICU sort key."""
    collation = ("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', "
                 "deterministic = false);")
    try:
        _load(pg_source, source_db, collation)
        _load(pg_target, target_db, collation)
    except psycopg.errors.FeatureNotSupported as exc:
        # A PostgreSQL built without ICU ("ICU is not supported in this build"): nothing to test.
        pytest.skip(f"this PostgreSQL has no ICU: {exc}")
    script = ("CREATE DOMAIN ci_code AS varchar(8) COLLATE ci;"
              "CREATE TABLE people (id int PRIMARY KEY, name text COLLATE ci, code ci_code);"
              "INSERT INTO people VALUES (1, 'Alpha', 'ab'), (2, 'Beta', 'cd');")
    _load(pg_source, source_db, script)
    _load(pg_target, target_db, script)
    same = _verify(pg_source, source_db, pg_target, target_db)
    assert same.identical and _fast(same), same.differences

    for change in ("UPDATE people SET name = 'alpha' WHERE id = 1",
                   "UPDATE people SET name = 'Alpha', code = 'CD' WHERE id = 2"):
        _exec(pg_target, target_db, change)
        report = _verify(pg_source, source_db, pg_target, target_db)
        assert _fast(report)
        assert [d.object for d in report.differences] == ["public.people"], change


def test_same_values_in_related_types_compare_equal(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    """int4 against int8, text against varchar or a domain over text: hashed by their text where
    the types differ, so equal values still compare equal, and a changed one still differs."""
    rows = "INSERT INTO widened SELECT g, g * 1000, 's' || g, 'n' || g FROM generate_series(1, 30) g;"
    _load(pg_source, source_db, "CREATE DOMAIN name_t AS text;"
          "CREATE TABLE widened (id int PRIMARY KEY, n int4, s text, nm name_t);" + rows)
    _load(pg_target, target_db,
          "CREATE TABLE widened (id int8 PRIMARY KEY, n int8, s varchar(20), nm text);" + rows)

    report = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=10)
    assert report.identical and _fast(report), report.differences

    _exec(pg_target, target_db, "UPDATE widened SET nm = 'changed' WHERE id = 15")
    [difference] = _verify(pg_source, source_db, pg_target, target_db, chunk_rows=10).differences
    assert (difference.object, difference.range) == ("public.widened", "id >= 11 and < 21")


def test_servers_that_hash_the_probe_row_differently_fall_back_to_md5(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_probe = rowhash.probe

    def other_byte_order(conn: psycopg.Connection[tuple], *, to_utf8: bool) -> str:  # type: ignore[type-arg]
        """The target answers as a server of the other byte order would: not the same number."""
        answer = real_probe(conn, to_utf8=to_utf8)
        return answer if conn.info.port == pg_source.port else str(int(answer) ^ 1)

    monkeypatch.setattr(rowhash, "probe", other_byte_order)
    _load(pg_source, source_db, KINDS)
    _load(pg_target, target_db, KINDS)

    same = _verify(pg_source, source_db, pg_target, target_db)
    assert same.identical, same.differences
    assert same.checksum == "md5"
    assert "hash the same probe row differently" in (same.checksum_reason or "")

    _exec(pg_target, target_db, "UPDATE kinds SET i8 = 150 - i8")
    changed = _verify(pg_source, source_db, pg_target, target_db)
    assert changed.checksum == "md5"
    assert [(d.object, d.range) for d in changed.differences] == [("public.kinds", "whole table")]


def test_a_probe_row_a_server_cannot_hash_falls_back_to_md5(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe's error is rolled back to its savepoint: the coordinator's transaction, whose
    snapshot the workers import, stays alive, and the run goes on with md5."""
    monkeypatch.setattr(rowhash, "_PROBE", (*rowhash._PROBE, ("not a date", "date", "date")))
    _load(pg_source, source_db, NUMBERED)
    _load(pg_target, target_db, NUMBERED)
    _exec(pg_target, target_db, "UPDATE numbered SET price = 11.0 WHERE id = 10")

    report = _verify(pg_source, source_db, pg_target, target_db)

    assert report.checksum == "md5"
    assert "could not hash the probe row" in (report.checksum_reason or "")
    assert [(d.object, d.range) for d in report.differences] == [("public.numbered", "id < 101")]


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


@pytest.mark.parametrize("checksum", ["auto", "md5"])
def test_a_column_named_t_does_not_stand_for_the_row(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    checksum: Literal["auto", "md5"],
) -> None:
    """The chunk queries alias the table as t; a column of that name must not hide the others."""
    script = ("CREATE TABLE tee (id int PRIMARY KEY, t text, v int);"
              "INSERT INTO tee SELECT g, 'same', g FROM generate_series(1, 20) g;")
    _load(pg_source, source_db, script)
    _load(pg_target, target_db, script)
    assert _verify(pg_source, source_db, pg_target, target_db, checksum=checksum).identical

    _exec(pg_target, target_db, "UPDATE tee SET v = 0 WHERE id = 5")
    report = _verify(pg_source, source_db, pg_target, target_db, checksum=checksum)
    assert report.checksum == ("md5" if checksum == "md5" else "hash_record_extended")
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

        same = _verify(pg_source, source_db, pg_target, latin1)
        assert same.identical and _fast(same), same.differences

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
    assert json.loads(same.stdout)["result"]["identical"] is True

    _exec(pg_target, target_db, "DELETE FROM numbered WHERE id = 42")
    differs = runner.invoke(app, args)
    assert differs.exit_code == 1, differs.output
    result = json.loads(differs.stdout)["result"]
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


def test_cli_checksum_md5_asked_for_in_the_environment(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str
) -> None:
    _load(pg_source, source_db, NUMBERED)
    _load(pg_target, target_db, NUMBERED)
    args = ["verify", "-s", pg_source.url(source_db), "-t", pg_target.url(target_db), "--jobs", "2"]
    runner = CliRunner()

    fast = runner.invoke(app, [*args, "--json"])
    assert fast.exit_code == 0, fast.output
    assert json.loads(fast.stdout)["result"]["checksum"] == "hash_record_extended"

    md5 = runner.invoke(app, [*args, "--json"], env={"RDSMIGRATE_VERIFY_CHECKSUM": "md5"})
    assert md5.exit_code == 0, md5.output
    result = json.loads(md5.stdout)["result"]
    assert (result["identical"], result["checksum"]) == (True, "md5")
    assert "asked for" in result["checksum_reason"]

    human = runner.invoke(app, args, env={"RDSMIGRATE_VERIFY_CHECKSUM": "md5"})
    assert "note: rows checksummed with md5: md5 was asked for" in human.output
    assert "(checksum md5)" in human.output

    wrong = runner.invoke(app, args, env={"RDSMIGRATE_VERIFY_CHECKSUM": "sha1"})
    assert wrong.exit_code == 2
    assert "--checksum" in wrong.stderr


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
        # The master user may not drop what another role owns (PostgreSQL 15: not a member).
        with admin(pg_source, source_db) as conn:
            conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
