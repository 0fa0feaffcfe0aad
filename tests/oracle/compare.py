"""An independent comparator: what a database holds, as named facts, and the differences.

Shares no code with ``rdsmigrate`` (not its catalog queries, not its verify, not its pg_dump
handling), so a bug there cannot hide itself here. It reads both databases as the superuser (an
observer sees everything) and describes each as a set of facts:

- rows: per table with storage (leaf partitions, inheritance parents with ONLY, populated
  materialized views), the row count and an md5 of the rows as ``to_jsonb`` text, sorted. jsonb
  keys are the column *names* in jsonb's own order, so a target with its columns in another order
  still compares equal; a zero-column table counts its rows;
- sequences: last_value and is_called;
- large objects: comment, md5 of the content and, with ``roles``, owner and ACL;
- the schema as ``pg_dump --schema-only`` prints it, one fact per archive entry (type, schema,
  name: its normalized text), without comments, SET lines and, unless ``roles``, ownership and
  grants (a copy without roles makes everything the target user's);
- validity: ``indisvalid`` of every index and ``convalidated`` of every constraint.

``differences(a, b)`` names each fact that is missing, extra or changed, e.g.
``rows public.t``, ``schema TABLE public.t``, ``valid index public.t_pkey``, ``lo 4242 comment``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

PINNED = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
    " SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'"
)
SYSTEM = "('pg_catalog', 'information_schema')"


@dataclass
class Image:
    rows: dict[str, str] = field(default_factory=dict)
    sequences: dict[str, str] = field(default_factory=dict)
    large_objects: dict[str, str] = field(default_factory=dict)
    schema: dict[str, str] = field(default_factory=dict)
    validity: dict[str, str] = field(default_factory=dict)

    def facts(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind in ("rows", "sequences", "large_objects", "schema", "validity"):
            prefix = {"rows": "rows", "sequences": "sequence", "large_objects": "lo",
                      "schema": "schema", "validity": "valid"}[kind]
            out.update({f"{prefix} {k}": v for k, v in getattr(self, kind).items()})
        return out


def _connect(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(PINNED)
    return conn


def _relations(conn: psycopg.Connection[Any], where: str) -> list[str]:
    """Quoted ``schema.name`` of the relations outside the system schemas matching ``where``."""
    rows = conn.execute(
        f"""SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE ({where}) AND n.nspname NOT IN {SYSTEM}"""
    ).fetchall()
    return [name for (name,) in rows]


def _rows(conn: psycopg.Connection[Any]) -> dict[str, str]:
    out = {}
    for name in _relations(conn, "(c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated))"
                                 " AND n.nspname NOT LIKE 'pg\\_%'"):
        row = conn.execute(
            "SELECT count(*), md5(coalesce(string_agg(j, E'\\n' ORDER BY j COLLATE \"C\"), ''))"
            f" FROM (SELECT to_jsonb(t)::text AS j FROM ONLY {name} t) s"
        ).fetchone()
        assert row is not None
        out[name] = f"{row[0]} rows, md5 {row[1]}"
    return out


def _sequences(conn: psycopg.Connection[Any]) -> dict[str, str]:
    out = {}
    for name in _relations(conn, "c.relkind = 'S'"):
        row = conn.execute(f"SELECT last_value, is_called FROM {name}").fetchone()
        assert row is not None
        out[name] = f"last_value {row[0]}, is_called {row[1]}"
    return out


def _large_objects(conn: psycopg.Connection[Any], roles: bool) -> dict[str, str]:
    out = {}
    for oid, owner, acl, comment, digest in conn.execute(
        """SELECT m.oid, pg_get_userbyid(m.lomowner), m.lomacl::text,
                  obj_description(m.oid, 'pg_largeobject'), md5(lo_get(m.oid))
             FROM pg_largeobject_metadata m"""
    ).fetchall():
        if roles:  # without roles a copy makes everything the target user's, grants dropped
            out[f"{oid} owner"] = str(owner)
            out[f"{oid} acl"] = str(acl)
        out[f"{oid} comment"] = str(comment)
        out[f"{oid} content"] = str(digest)
    return out


def _validity(conn: psycopg.Connection[Any]) -> dict[str, str]:
    out = {}
    for name, valid in conn.execute(
        f"""SELECT format('%I.%I', n.nspname, c.relname), i.indisvalid FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname NOT IN {SYSTEM} AND n.nspname NOT LIKE 'pg\\_toast%'"""
    ).fetchall():
        out[f"index {name}"] = str(valid)
    for name, valid in conn.execute(
        f"""SELECT format('%I.%s %I', n.nspname,
                          coalesce(quote_ident(r.relname), format('domain %I', t.typname)), c.conname),
                   c.convalidated
              FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
              LEFT JOIN pg_class r ON r.oid = c.conrelid LEFT JOIN pg_type t ON t.oid = c.contypid
             WHERE n.nspname NOT IN {SYSTEM}
               -- PostgreSQL 18 records NOT NULL as constraints, 15 as attnotnull: the schema
               -- facts compare NOT NULL; here only the constraints both majors have.
               AND c.contype <> 'n'"""
    ).fetchall():
        out[f"constraint {name}"] = str(valid)
    return out


_HEADER = re.compile(r"^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>[^;]*); Schema: (?P<schema>[^;]*);")
_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config|\\(un)?restrict )")
_OWNERSHIP = re.compile(r"^ALTER [A-Z ]+ .* OWNER TO .*;$")
_GRANTS = re.compile(r"^(GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) ")


def schema_entries(pg_dump: Path, dsn: str, roles: bool) -> dict[str, str]:
    """``pg_dump --schema-only`` split into its archive entries, normalized."""
    text = subprocess.run([str(pg_dump), "--schema-only",
                           "-d", dsn], capture_output=True, text=True, check=True).stdout
    entries: dict[str, list[str]] = {}
    key = "preamble"
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            key = f"{header['type']} {header['schema']}.{header['name']}"
            entries.setdefault(key, [])
            continue
        if not line.strip() or _NOISE.match(line):
            continue
        if not roles and (_OWNERSHIP.match(line) or _GRANTS.match(line)):
            continue
        entries.setdefault(key, []).append(line)
    return {k: "\n".join(v) for k, v in entries.items() if v}


def image(dsn: str, pg_dump: Path, *, roles: bool = False) -> Image:
    with _connect(dsn) as conn:
        return Image(rows=_rows(conn), sequences=_sequences(conn),
                     large_objects=_large_objects(conn, roles), schema=schema_entries(pg_dump, dsn, roles),
                     validity=_validity(conn))


def differences(expected: Image, actual: Image) -> dict[str, str]:
    """Each fact of ``expected`` that ``actual`` lacks or holds otherwise, and each extra fact:
    name -> a short description of the difference."""
    a, b = expected.facts(), actual.facts()
    out = {}
    for name in a.keys() | b.keys():
        if name not in b:
            out[name] = f"missing (source: {a[name][:200]})"
        elif name not in a:
            out[name] = f"extra (target: {b[name][:200]})"
        elif a[name] != b[name]:
            out[name] = f"differs: source {a[name][:300]!r} target {b[name][:300]!r}"
    return dict(sorted(out.items()))
