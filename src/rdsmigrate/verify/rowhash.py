"""How a row becomes the 64-bit number that a chunk's checksum sums, and which way a run uses.

Two row hashes exist, and one run uses one of them on both servers.

``hash_record_extended`` (the fast one) hashes each value in its binary form with its type's own
hash function instead of printing the row and taking the md5 of the text. Backend CPU per million
rows on PostgreSQL 15 here: pgbench-like accounts 0.105 s against md5's 0.416 s, the benchmark's
mixed-type payments 0.195 s against 0.646 s. A value enters the row as itself only where equal
hashes mean equal values on any server: int2, int4, int8, bool, text, varchar, bpchar, bytea,
uuid, date, time, timestamp and timestamptz (by its instant, whatever the zone), and only when
both sides' columns have that same type. It is cast to that type, which unwraps a domain. Text
gets ``COLLATE "C"``: under a nondeterministic collation the hash is that of the ICU sort key,
slower and blind to case. bpchar compares as PostgreSQL compares it, without trailing blanks.
Every other value enters as its text, printed with the output settings pinned by
:mod:`rdsmigrate.verify.session`: numeric (``1.0`` and ``1.00`` are different data), float
(``-0``), json and jsonb, enums (their hash is that of their OID, which differs between
databases), arrays, ranges, composites, intervals, reg* types and anything unknown; so does a
column whose type differs between the sides (int4 against int8 compare by their text, as md5
does). When the servers' encodings differ, every text goes in as its UTF-8 bytes.

A record's hash is a weighted *sum* of its values' hashes, so summed over a chunk it would be a
sum per column, blind to values exchanged between rows (two in three swaps of one value between
two rows went unnoticed when tried). Hashing each record's hash once more, as its decimal text
through ``hashtextextended``, makes a row's number a nonlinear function of the whole row; that
costs 0.02 s to 0.03 s per million rows (0.089 s and 0.169 s above without it).

The hash functions behind it read machine words, so a little-endian and a big-endian server
disagree, and their results are not promised across major versions. Before any table each side
hashes the same probe row, one sample of every type hashed as itself (with a non-ASCII text and a
NULL) and one hashed as text, built by the same code as the chunk queries; only when both answers
match, and both servers run PostgreSQL 14 or later (where ``hash_record_extended`` appeared), is
the fast hash used.

``md5`` (the fallback) is the sum of the first 64 bits of the md5 of each row's text: its value is
defined by an RFC, so any two servers agree. It hashes the whole row's text, ``(t.*)::text``, when
both sides have the same columns in the same order (dropped columns do not print; the whole row
prints 25% faster: 0.51 s against 0.71 s per million six-column rows), else ``ROW(c1, c2,
...)::text`` over the columns both sides share. ``verify --checksum md5`` or
``RDSMIGRATE_VERIFY_CHECKSUM=md5`` forces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from rdsmigrate.db.catalog import Column, Table
from rdsmigrate.verify.session import Side

FAST: Final = "hash_record_extended"
MD5: Final = "md5"
FAST_SINCE_VERSION: Final = 140000

# Types whose hash is a function of the exact value and carries no database's OIDs.
TYPED: Final = frozenset({"int2", "int4", "int8", "bool", "text", "varchar", "bpchar", "bytea",
                          "uuid", "date", "time", "timestamp", "timestamptz"})
_TEXT_LIKE: Final = frozenset({"text", "varchar", "bpchar"})


@dataclass(frozen=True)
class Field:
    """One value of the hashed row: ``typed`` is the pg_catalog type it is hashed as, None for
    its text."""

    value: sql.Composable
    typed: str | None


# The probe row: (text of the value, the type it is read as, how it is hashed).
_PROBE: Final[tuple[tuple[str | None, str, str | None], ...]] = (
    ("-2", "int2", "int2"), ("-123456", "int4", "int4"), ("1234567890123", "int8", "int8"),
    ("true", "bool", "bool"), ("Grüße, é", "text", "text"), ("v", "varchar", "varchar"),
    ("pad  ", "bpchar", "bpchar"), ("\\x00ff80", "bytea", "bytea"),
    ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid", "uuid"), ("2024-02-29", "date", "date"),
    ("23:59:59.999999", "time", "time"), ("2000-01-01 00:00:00.000001", "timestamp", "timestamp"),
    ("2038-01-19 03:14:08+00", "timestamptz", "timestamptz"), (None, "int4", "int4"),
    ("1.50", "numeric", None),
)


def _cast(value: sql.Composable, typ: str) -> sql.Composable:
    return sql.SQL("{}::{}").format(value, sql.Identifier("pg_catalog", typ))


def _field(field: Field, *, to_utf8: bool) -> sql.Composable:
    as_type = field.typed or "text"
    value = _cast(field.value, as_type)
    if as_type not in _TEXT_LIKE:
        return value
    if to_utf8:
        # The servers' encodings differ: hash the same bytes on both sides.
        return sql.SQL("convert_to({}, 'UTF8')").format(value)
    return sql.SQL('{} COLLATE "C"').format(value)


def fast_hash(fields: Sequence[Field], *, to_utf8: bool) -> sql.Composable:
    """The int8 that one row contributes to its chunk's sum under ``hash_record_extended``."""
    row = sql.SQL(", ").join(_field(f, to_utf8=to_utf8) for f in fields)
    return sql.SQL(
        "hashtextextended(hash_record_extended(ROW({}), 0)::text COLLATE \"C\", 0)").format(row)


def md5_hash(columns: Sequence[str] | None, *, to_utf8: bool) -> sql.Composable:
    """The int8 that one row contributes under ``md5``; ``columns`` None is the whole row."""
    # (t.*), not t: a column named t would win over the row.
    text: sql.Composable = sql.SQL("(t.*)::text") if columns is None else sql.SQL(
        "ROW({})::text").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in columns))
    if to_utf8:
        text = sql.SQL("convert_to({}, 'UTF8')").format(text)
    return sql.SQL("('x' || substr(md5({}), 1, 16))::bit(64)::int8").format(text)


@dataclass(frozen=True)
class Checksum:
    """The row hash both sides use for a whole run, and why md5 when it is md5."""

    method: str
    reason: str | None = None
    to_utf8: bool = False

    def row_hash(self, source: Table, target: Table) -> sql.Composable:
        """The hash of a row over the columns both sides have, in the source's order."""
        theirs = {c.name: c for c in target.columns}
        shared = [c for c in source.columns if c.name in theirs]
        if self.method == MD5:
            same = [c.name for c in source.columns] == [c.name for c in target.columns]
            return md5_hash(None if same else [c.name for c in shared], to_utf8=self.to_utf8)
        return fast_hash([Field(sql.Identifier("t", c.name), _typed(c, theirs[c.name]))
                          for c in shared], to_utf8=self.to_utf8)


def _typed(mine: Column, theirs: Column) -> str | None:
    """Hashed as itself only when both sides hold the same type: int4 against int8, or text
    against varchar, compare by their text, as equal values print the same."""
    if mine.base_type in TYPED and mine.base_type == theirs.base_type:
        return mine.base_type
    return None


def choose(src: Side, tgt: Side, requested: str) -> Checksum:
    """``hash_record_extended`` when both servers can and provably agree on it, else md5."""
    to_utf8 = src.encoding != tgt.encoding
    if requested == MD5:
        return Checksum(MD5, "md5 was asked for (--checksum md5 or RDSMIGRATE_VERIFY_CHECKSUM)",
                        to_utf8)
    for side in (src, tgt):
        if side.version_num < FAST_SINCE_VERSION:
            return Checksum(MD5, f"the {side.endpoint.role} runs PostgreSQL "
                                 f"{side.version_num // 10000}, and {FAST} needs 14", to_utf8)
    answers = []
    for side in (src, tgt):
        try:
            answers.append(probe(side.conn, to_utf8=to_utf8))
        except psycopg.Error as exc:
            return Checksum(MD5, f"the {side.endpoint.role} could not hash the probe row "
                                 f"({str(exc).strip().splitlines()[0]})", to_utf8)
    if answers[0] != answers[1]:
        return Checksum(MD5, f"the servers hash the same probe row differently (source "
                             f"{answers[0]}, target {answers[1]}): another byte order or other "
                             "hash functions", to_utf8)
    return Checksum(FAST, None, to_utf8)


def probe(conn: psycopg.Connection[Any], *, to_utf8: bool) -> str:
    """The fast hash of the probe row on this server, inside a savepoint so that an error (a
    character the server's encoding lacks) leaves the session's snapshot usable."""
    fields = [Field(_cast(sql.Literal(text), typ), typed) for text, typ, typed in _PROBE]
    query = sql.SQL("SELECT {}::text").format(fast_hash(fields, to_utf8=to_utf8))
    conn.execute("SAVEPOINT rdsmigrate_probe")
    try:
        row = conn.execute(query).fetchone()
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT rdsmigrate_probe")
        raise
    conn.execute("RELEASE SAVEPOINT rdsmigrate_probe")
    assert row is not None
    return str(row[0])
