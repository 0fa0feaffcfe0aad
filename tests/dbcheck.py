"""An independent check that two databases hold the same things.

Deliberately shares no code with ``rdsmigrate`` (not its catalog, not its verify): it lists
tables with its own query and compares each table's row count and an md5 of its rows' text,
sorted, so a bug in the code under test cannot hide itself here.

The one thing it leaves out by name: the schema ``rdsmigrate``, where the online commands keep
their record on the target (the source never has it).
"""

from __future__ import annotations

from typing import Any

import psycopg

PINNED = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
    " SET extra_float_digits = 3; SET bytea_output = 'hex'"
)


def _conn(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(PINNED)
    return conn


def table_fingerprints(dsn: str) -> dict[str, tuple[int, str]]:
    """``schema.table`` -> (rows, md5 of the sorted row texts) for every table holding rows."""
    out: dict[str, tuple[int, str]] = {}
    with _conn(dsn) as conn:
        tables = conn.execute(
            """SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdsmigrate')
                  AND n.nspname NOT LIKE 'pg\\_%'"""
        ).fetchall()
        for (name,) in tables:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x, E'\\n' ORDER BY x COLLATE \"C\"), ''))"
                f" FROM (SELECT t::text AS x FROM ONLY {name} t) s"
            ).fetchone()
            assert row is not None
            out[name] = (int(row[0]), str(row[1]))
    return out


def sequence_values(dsn: str) -> dict[str, tuple[int, bool]]:
    with _conn(dsn) as conn:
        names = conn.execute(
            """SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename)
                 FROM pg_sequences"""
        ).fetchall()
        values = {}
        for (name,) in names:
            row = conn.execute(f"SELECT last_value, is_called FROM {name}").fetchone()
            assert row is not None
            values[name] = (int(row[0]), bool(row[1]))
    return values


def object_counts(dsn: str) -> dict[str, int]:
    """How many indexes, constraints, triggers, policies, views... a database has."""
    with _conn(dsn) as conn:
        row = conn.execute(
            """SELECT
                 (SELECT count(*) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog','information_schema','rdsmigrate')),
                 (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                   WHERE n.nspname NOT IN ('pg_catalog','information_schema','rdsmigrate')
                     -- PostgreSQL 18 records NOT NULL as constraints; 15 does not.
                     AND c.contype <> 'n'),
                 (SELECT count(*) FROM pg_trigger t WHERE NOT t.tgisinternal),
                 (SELECT count(*) FROM pg_policy),
                 (SELECT count(*) FROM pg_views WHERE schemaname NOT IN ('pg_catalog','information_schema')),
                 (SELECT count(*) FROM pg_matviews WHERE ispopulated),
                 (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname NOT IN ('pg_catalog','information_schema')),
                 (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname NOT IN ('pg_catalog','information_schema','rdsmigrate') AND t.typtype IN ('e','d','c','r')),
                 (SELECT count(*) FROM pg_largeobject_metadata),
                 (SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
                   AND d.classoid = 'pg_class'::regclass
                   WHERE c.relnamespace <> coalesce(to_regnamespace('rdsmigrate'), 0))"""
        ).fetchone()
    assert row is not None
    keys = ("indexes", "constraints", "triggers", "policies", "views", "populated_matviews",
            "functions", "types", "large_objects", "comments")
    return dict(zip(keys, (int(v) for v in row), strict=True))


def assert_same(source_dsn: str, target_dsn: str) -> dict[str, tuple[int, str]]:
    """Every table, sequence and schema object matches; returns the source's fingerprints."""
    src, tgt = table_fingerprints(source_dsn), table_fingerprints(target_dsn)
    assert src.keys() == tgt.keys(), f"tables differ: {src.keys() ^ tgt.keys()}"
    differing = {t: (src[t], tgt[t]) for t in src if src[t] != tgt[t]}
    assert not differing, f"tables differ in rows or content: {differing}"
    assert sequence_values(source_dsn) == sequence_values(target_dsn)
    src_objects, tgt_objects = object_counts(source_dsn), object_counts(target_dsn)
    assert src_objects == tgt_objects, f"schema objects differ: {src_objects} vs {tgt_objects}"

    return src
