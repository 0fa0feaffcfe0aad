"""The generated part of the differential corpus (issue 10): hypothesis writes random schemas
(random column types; names with spaces, quotes and upper case; zero-column tables; generated and
identity columns; range, list and hash partitions; inheritance; unlogged tables; tables without
a primary key) and rows, and each database must come out of ``rdsmigrate copy`` with no
difference from its source that ``pg_dump | pg_restore`` does not have too: here, none at all.

The examples are derandomized (the same ones on every run, so ``make test`` is stable) and few
(each is a real copy and a real restore): ``RDSMIGRATE_CORPUS_EXAMPLES`` raises their number.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from rdsmigrate.localpg import LocalCluster
from tests.conftest import create_database, drop_database, master
from tests.corpus import differential, explain

pytestmark = [pytest.mark.pg, pytest.mark.slow]

EXAMPLES = int(os.environ.get("RDSMIGRATE_CORPUS_EXAMPLES", "4"))

# Names meant to break whatever quotes identifiers badly: spaces, both quote kinds, upper case,
# dots, a leading digit, a reserved word.
NAME_ALPHABET = st.sampled_from(list("abcxyzABCXYZ _\"'.$0-é"))
names = st.text(NAME_ALPHABET, min_size=1, max_size=12).filter(lambda s: s.strip() == s)

_ts = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                   timezones=st.just(UTC))
TYPES: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.integers(-2**31, 2**31 - 1),
    "bigint": st.integers(-2**63, 2**63 - 1),
    "smallint": st.integers(-2**15, 2**15 - 1),
    "text": st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=30),
    "varchar(12)": st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12),
    "numeric(12,3)": st.decimals(min_value=Decimal("-999999999.999"),
                                 max_value=Decimal("999999999.999"), places=3),
    "numeric": st.decimals(allow_nan=False, allow_infinity=False, places=6,
                           min_value=Decimal(-10**12), max_value=Decimal(10**12))
               | st.just(Decimal("NaN")),
    "double precision": st.floats(allow_nan=True, allow_infinity=True),
    "real": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "timestamptz": _ts,
    "timestamp": st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    "date": st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    "interval": st.timedeltas(min_value=timedelta(days=-10**5), max_value=timedelta(days=10**5)),
    "bytea": st.binary(max_size=40),
    "jsonb": st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                          | st.text(st.characters(exclude_characters="\x00", codec="utf-8"),
                                    max_size=8),
                          lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=6
                          ).map(Jsonb),
    "uuid": st.uuids(),
    "integer[]": st.lists(st.integers(-1000, 1000) | st.none(), max_size=4),
    "text[]": st.lists(st.text(st.characters(exclude_characters="\x00", codec="utf-8"),
                               max_size=5), max_size=3),
    "inet": st.ip_addresses().map(str),
}


@dataclass
class Column:
    name: str
    type: str
    nullable: bool


@dataclass
class Table:
    name: str
    kind: str  # plain, unlogged, range, list, hash, inherits
    columns: list[Column]
    primary_key: bool
    identity: str | None  # None, 'ALWAYS', 'BY DEFAULT'
    generated: bool
    rows: list[list[Any]] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    """Partition key (or child marker) per row."""


@st.composite
def tables(draw: st.DrawFn, name: str) -> Table:
    kind = draw(st.sampled_from(["plain", "unlogged", "range", "list", "hash", "inherits"]))
    width = draw(st.integers(0, 5))
    col_names = draw(st.lists(names.filter(lambda n: n not in ("k", "id", "twice")), min_size=width,
                              max_size=width, unique_by=str.lower))
    columns = [Column(n, draw(st.sampled_from(sorted(TYPES))), draw(st.booleans()))
               for n in col_names]
    partitioned = kind in ("range", "list", "hash")
    table = Table(name=name, kind=kind, columns=columns,
                  primary_key=draw(st.booleans()),
                  # An inheritance child gets the parent's NOT NULL but not its identity.
                  identity=None if kind == "inherits" else draw(
                      st.sampled_from([None, "ALWAYS", "BY DEFAULT"])),
                  generated=draw(st.booleans()) and kind != "inherits")
    if not partitioned and kind != "inherits" and not columns and not table.identity:
        table.primary_key = False  # a zero-column table (nothing to key on)
    count = draw(st.integers(0, 12))
    for _ in range(count):
        table.rows.append([draw(TYPES[c.type]) if not c.nullable or draw(st.booleans()) else None
                           for c in columns])
        table.keys.append(draw(st.integers(-50, 50)))
    return table


@st.composite
def schemas(draw: st.DrawFn) -> list[Table]:
    table_names = draw(st.lists(names, min_size=1, max_size=5, unique_by=str.lower))
    return [draw(tables(n)) for n in table_names]


def _ddl(schema: str, t: Table) -> list[sql.Composable]:
    ident = sql.Identifier(schema, t.name)
    partitioned = t.kind in ("range", "list", "hash")
    cols: list[sql.Composable] = []
    if partitioned or t.kind == "inherits" or t.generated or t.primary_key:
        cols.append(sql.SQL("k integer NOT NULL"))
    if t.identity:
        cols.append(sql.SQL(f"id bigint GENERATED {t.identity} AS IDENTITY"))
    for c in t.columns:
        cols.append(sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type),
                                              sql.SQL("" if c.nullable else " NOT NULL")))
    if t.generated:
        cols.append(sql.SQL("twice integer GENERATED ALWAYS AS (k * 2) STORED"))
    if t.primary_key:
        cols.append(sql.SQL("PRIMARY KEY (k{})").format(sql.SQL(", id" if t.identity else "")))
    head = sql.SQL("CREATE {}TABLE {} ({})").format(
        sql.SQL("UNLOGGED " if t.kind == "unlogged" else ""), ident, sql.SQL(", ").join(cols))
    out: list[sql.Composable] = []
    if partitioned:
        head = sql.SQL("{} PARTITION BY {} (k)").format(head, sql.SQL(t.kind.upper()))
    out.append(head)

    def part(suffix: str, bound: str) -> sql.Composable:
        return sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
            sql.Identifier(schema, f"{t.name} {suffix}"), ident, sql.SQL(bound))

    if t.kind == "range":
        out += [part("neg", "FOR VALUES FROM (MINVALUE) TO (0)"),
                part("pos", "FOR VALUES FROM (0) TO (MAXVALUE)")]
    elif t.kind == "list":
        out += [part("even", "FOR VALUES IN (0, 2, 4, -2, -4)"), part("rest", "DEFAULT")]
    elif t.kind == "hash":
        out += [part(f"h{r}", f"FOR VALUES WITH (MODULUS 3, REMAINDER {r})") for r in range(3)]
    elif t.kind == "inherits":
        out.append(sql.SQL("CREATE TABLE {} (extra text DEFAULT 'child') INHERITS ({})").format(
            sql.Identifier(schema, f"{t.name} child"), ident))
    return out


def build(conn: Any, schema: str, t: Table) -> None:
    for statement in _ddl(schema, t):
        conn.execute(statement)
    keyed = t.kind in ("range", "list", "hash", "inherits") or t.generated or t.primary_key
    names_ = [sql.Identifier(c.name) for c in t.columns]
    for i, (row, k) in enumerate(zip(t.rows, t.keys, strict=True)):
        target = sql.Identifier(schema, t.name)
        if t.kind == "inherits" and i % 2:
            target = sql.Identifier(schema, f"{t.name} child")
        k_value = (k * 100 + i) if t.primary_key else k  # unique when it is the key
        cols = ([sql.SQL("k")] if keyed else []) + names_
        values = ([k_value] if keyed else []) + row
        if not cols:
            conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(target))
            continue
        conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            target, sql.SQL(", ").join(cols), sql.SQL(", ").join(sql.Placeholder() * len(cols))),
            values)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schema=schemas())
def test_generated_databases_copy_without_differences(
    schema: list[Table], pg_source: LocalCluster, pg_target: LocalCluster,
) -> None:
    source_db = create_database(pg_source, "gen")
    try:
        with master(pg_source, source_db) as conn:
            conn.execute('CREATE SCHEMA "Odd ""schema"" name"')
            for t in schema:
                build(conn, "Odd \"schema\" name", t)
            conn.execute("ANALYZE")
        with tempfile.TemporaryDirectory(prefix="rdsmigrate-gen-") as tmp:
            outcome = differential("generated", pg_source, source_db, pg_target, Path(tmp))
        explain(outcome, {})
    finally:
        drop_database(pg_source, source_db)
