"""The independent check after every run: same tables, same row counts, same indexes and
constraints.

It shares no code with ``rdsmigrate`` (nor with ``tests/dbcheck.py``, whose md5 of every row
would cost more than some of the runs it checks): its own catalog queries and exact
``count(*)``. Cheap enough to run after each of the benchmark's runs, and enough to catch a
contender that skipped a table, lost rows or left out an index or a foreign key. Contents are
compared in full by ``rdsmigrate verify`` and, at tiny scale, by the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# `rdsmigrate`: the schema where sync keeps its record on the target (the README tells users to
# drop it after the cutover); not part of the migrated data.
TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdsmigrate')
   AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2
"""

OBJECTS = """
SELECT (SELECT count(*) FROM pg_indexes
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'rdsmigrate')),
       (SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdsmigrate')
           -- PostgreSQL 18 records NOT NULL as constraints, older majors do not.
           AND c.contype <> 'n')
"""


@dataclass(frozen=True)
class Inventory:
    rows: dict[str, int]
    """``schema.table`` -> exact row count."""
    indexes: int
    constraints: int


def inventory(dsn: str) -> Inventory:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows: dict[str, int] = {}
        for schema, table in conn.execute(TABLES).fetchall():
            ident = sql.Identifier(schema, table)
            count = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(ident)).fetchone()
            assert count is not None
            rows[f"{schema}.{table}"] = int(count[0])
        objects: Any = conn.execute(OBJECTS).fetchone()
    return Inventory(rows=rows, indexes=int(objects[0]), constraints=int(objects[1]))


def differences(source: Inventory, target: Inventory) -> list[str]:
    """What the target lacks or has too much of; empty when the run verified."""
    problems = [f"{name}: {count} rows on the source, {target.rows.get(name)} on the target"
                for name, count in source.rows.items() if target.rows.get(name) != count]
    problems += [f"{name}: not on the source" for name in target.rows if name not in source.rows]
    if source.indexes != target.indexes:
        problems.append(f"indexes: {source.indexes} on the source, {target.indexes} on the target")
    if source.constraints != target.constraints:
        problems.append(f"constraints: {source.constraints} on the source, "
                        f"{target.constraints} on the target")
    return problems
