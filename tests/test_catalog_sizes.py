"""Table sizes as the catalog reports them: from the statistics only where they are current.

``list_tables`` takes a small table's size from ``pg_class.relpages`` (measuring 10,000 tables
opened each of them) and measures every table the statistics have never seen or call big, so
the plan never mistakes a freshly loaded or grown big table for an empty one.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rdsmigrate.db import catalog
from rdsmigrate.localpg import LocalCluster
from tests.conftest import master

ROW = "repeat('x', 500)"


def _actual(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "SELECT pg_relation_size(c.oid) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0) "
        "FROM pg_class c WHERE c.oid = %s::regclass", [name]).fetchone()
    assert row is not None
    return int(row[0])


def _bytes(conn: psycopg.Connection[Any], name: str) -> int:
    (table,) = [t for t in catalog.list_tables(conn) if t.name == name]
    return table.bytes


def test_sizes_are_measured_unless_the_statistics_know_a_small_table(
        pg_source: LocalCluster, source_db: str) -> None:
    with master(pg_source, source_db) as conn:
        conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, pad text)"
                     " WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO fresh SELECT g, {ROW} FROM generate_series(1, 3000) g")
        conn.execute("CREATE TABLE grown (id int, pad text) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO grown SELECT g, {ROW} FROM generate_series(1, 3000) g")
        conn.execute("ANALYZE grown")
        conn.execute(f"INSERT INTO grown SELECT g, {ROW} FROM generate_series(1, 3000) g")
        conn.execute("CREATE TABLE small (id int, pad text)")
        conn.execute(f"INSERT INTO small SELECT g, {ROW} FROM generate_series(1, 20) g")
        conn.execute("ANALYZE small")

        # Never analyzed (relpages 0): measured, not taken as empty.
        assert _bytes(conn, "fresh") == _actual(conn, "fresh") > 128 * 8192
        # Analyzed big, then doubled: measured, not the statistics' half.
        assert _bytes(conn, "grown") == _actual(conn, "grown") > 300 * 8192
        # Small by current statistics: their figure, which is the size.
        assert _bytes(conn, "small") == _actual(conn, "small") > 0
