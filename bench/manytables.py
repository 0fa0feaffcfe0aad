"""The "ten thousand tables" dataset of issue 13: the shape of a schema per tenant.

``tables`` small tables spread over ``SCHEMAS`` schemas; each schema has a ``parent`` table and
every table has a primary key, one more index, a foreign key to its schema's parent and
``ROWS_PER_TABLE`` rows. Row counts are tiny on purpose: what decides the time here is what a
tool pays per table (catalog queries, process starts, one COPY setup, one verify pass, one lock),
not bandwidth. Values derive from the table and row numbers, so every build is the same.

The servers need more lock slots than PostgreSQL's default for ``pg_dump`` of 10,000 tables (one
transaction locks every table it dumps): :data:`SETTINGS` raises ``max_locks_per_transaction``,
as an RDS parameter group for such a database must too.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

SCHEMAS = 50
ROWS_PER_TABLE = 100
BATCH = 250
"""Tables created per transaction while building (each takes a few locks until commit)."""

SETTINGS: dict[str, str] = {"max_locks_per_transaction": "512"}


def schema_name(number: int) -> str:
    return f"tenant_{number:02d}"


def table_names(tables: int) -> list[tuple[str, str]]:
    """(schema, table) of every small table, round-robin over the schemas."""
    return [(schema_name(i % SCHEMAS), f"t_{i:05d}") for i in range(tables)]


def build(conn: psycopg.Connection[Any], tables: int) -> None:
    """Create the schemas, their parents and ``tables`` small tables on ``conn`` (autocommit)."""
    for s in range(SCHEMAS):
        conn.execute(sql.SQL(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.parent (id int PRIMARY KEY, name text NOT NULL);"
            " INSERT INTO {s}.parent SELECT i, 'parent ' || i FROM generate_series(1, {n}) i"
        ).format(s=sql.Identifier(schema_name(s)), n=sql.Literal(ROWS_PER_TABLE)))
    names = table_names(tables)
    for first in range(0, len(names), BATCH):
        with conn.transaction():
            for number, (schema, table) in enumerate(names[first:first + BATCH], start=first):
                ident = sql.Identifier(schema, table)
                conn.execute(sql.SQL(
                    "CREATE TABLE {t} (id int PRIMARY KEY,"
                    " parent_id int NOT NULL REFERENCES {p} (id),"
                    " label text NOT NULL, amount numeric(12, 2), created_at timestamptz);"
                    " CREATE INDEX {i} ON {t} (parent_id, created_at);"
                    " INSERT INTO {t} SELECT i, 1 + (i * 7 + {k}) % {n}, 'row ' || i || ' of ' || {k},"
                    " round(i * 1.25 + {k} % 100, 2),"
                    " timestamptz '2024-01-01 00:00:00+00' + make_interval(hours => i + {k})"
                    " FROM generate_series(1, {n}) i"
                ).format(t=ident, p=sql.Identifier(schema, "parent"),
                         i=sql.Identifier(f"{table}_parent_idx"), k=sql.Literal(number),
                         n=sql.Literal(ROWS_PER_TABLE)))
    conn.execute("VACUUM (FREEZE, ANALYZE)")
