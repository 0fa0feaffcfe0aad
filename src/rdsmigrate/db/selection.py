"""Which tables a command works on: ``--schema`` and ``--exclude-table`` resolved once.

The patterns are matched here, against the source's catalog, and turned into exact names; every
part of a migration (``pg_dump``, the rows, sequences, materialized views, the publication,
``verify``, ``cutover``'s counts) then works from that one result, so none of them can read a
pattern differently from another. (Handing the raw patterns to ``pg_dump`` did: it lowercases
unquoted names and matches a bare name only on its ``search_path``, so ``--exclude-table foo``
with ``app.foo`` and ``public.foo`` left ``app.foo`` created empty while the rows skipped it.)

The syntax, one meaning everywhere:

- ``--schema PATTERN`` selects the schemas whose name matches; ``--exclude-table NAME`` leaves out
  the tables called NAME in every selected schema, ``--exclude-table SCHEMA.NAME`` exactly that
  one. A "table" is an ordinary, unlogged or partitioned table; excluding one also excludes its
  partitions and inheritance children (they cannot be created without it), the sequences its
  serial and identity columns own, and the views and materialized views built on it. A foreign
  key of a selected table that references an excluded one is an error naming both: the target
  could not create it, and silently dropping it would weaken the target's schema.
- Names are case-sensitive as written (``Foo`` is not ``foo``); ``*`` matches any run of
  characters and ``?`` one character; a part in double quotes is matched literally (wildcards and
  dots included, ``""`` for a double quote), so ``'"my.schema"."Big Table"'`` names a table with
  a dot and a space. An unquoted ``.`` separates schema from table.
- A pattern that matches nothing is an error naming it: a typo must not silently copy a table the
  user meant to leave out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from rdsmigrate.db import catalog
from rdsmigrate.errors import UserError
from rdsmigrate.settings import Selection

_SYNTAX = ("write NAME or SCHEMA.NAME (case-sensitive; * and ? are wildcards; double quotes "
           "around a part that holds a dot, a quote or a wildcard character)")


def compile_pattern(text: str, *, qualified: bool) -> tuple[re.Pattern[str], ...]:
    """The regular expressions of ``text``'s parts: one, or (``qualified``) schema and name."""
    parts: list[str] = [""]
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and text[i + 1:i + 2] == '"':
                parts[-1] += re.escape('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                parts[-1] += re.escape(ch)
        elif ch == '"':
            quoted = True
        elif ch == "." and qualified:
            parts.append("")
        else:
            parts[-1] += {"*": ".*", "?": "."}.get(ch, re.escape(ch))
        i += 1
    if quoted or len(parts) > 2 or not all(parts):
        what = "unbalanced double quote" if quoted else "not a name"
        raise UserError(f"--{'exclude-table' if qualified else 'schema'} {text!r}: {what}; "
                        + (_SYNTAX if qualified else "write a schema name (case-sensitive; * and "
                           "? are wildcards)"))
    return tuple(re.compile(p, re.DOTALL) for p in parts)


def quote_pattern(name: str) -> str:
    """``name`` as a ``pg_dump``/``psql`` pattern that matches exactly it and nothing else."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Resolved:
    """The selection as exact names of the source; :attr:`tables` are the source's own."""

    schemas: frozenset[str] | None
    """The selected schemas; None when ``--schema`` was not given (every schema)."""
    excluded: frozenset[tuple[str, str]]
    """``(schema, name)`` of every table left out, descendants included, and of the views and
    materialized views built on them."""
    excluded_sequences: frozenset[tuple[str, str]]
    tables: tuple[catalog.Table, ...] = ()
    """The selected tables holding rows, as listed on the source when this was resolved."""

    def covers_schema(self, schema: str) -> bool:
        return self.schemas is None or schema in self.schemas

    def covers(self, schema: str, name: str) -> bool:
        return self.covers_schema(schema) and (schema, name) not in self.excluded

    def covers_sequence(self, schema: str, name: str) -> bool:
        return self.covers_schema(schema) and (schema, name) not in self.excluded_sequences

    @property
    def excluded_names(self) -> list[str]:
        """``schema.name`` of each table (and view on one) left out, for reports."""
        return [f"{s}.{n}" for s, n in sorted(self.excluded)]

    def tables_of(self, conn: psycopg.Connection[Any]) -> list[catalog.Table]:
        """The same selection, by name, in another database (``verify``'s target)."""
        return catalog.list_tables(conn, self.covers)

    def sequences_of(self, conn: psycopg.Connection[Any]) -> list[catalog.Sequence]:
        return catalog.list_sequences(conn, self.covers_sequence)

    def pg_dump_args(self) -> list[str]:
        """Exact, quoted ``--schema``/``--exclude-table`` patterns for ``pg_dump``."""
        args = [f"--schema={quote_pattern(s)}" for s in sorted(self.schemas or ())]
        args += [f"--exclude-table={quote_pattern(s)}.{quote_pattern(n)}"
                 for s, n in sorted(self.excluded | self.excluded_sequences)]
        return args


EVERYTHING = Resolved(None, frozenset(), frozenset())


def resolve(conn: psycopg.Connection[Any], selection: Selection, *, strict: bool = True) -> Resolved:
    """Match ``selection`` against ``conn``'s catalog; UserError for a pattern matching nothing
    unless not ``strict`` (``status`` and ``cutover`` re-resolve what ``sync`` accepted: an
    excluded table dropped since is no reason to refuse)."""
    schemas: frozenset[str] | None = None
    if selection.schemas:
        present = catalog.list_schemas(conn)
        chosen: set[str] = set()
        for text in selection.schemas:
            (pattern,) = compile_pattern(text, qualified=False)
            hits = {s for s in present if pattern.fullmatch(s)}
            if not hits and strict:
                raise UserError(f"--schema {text!r} matches no schema of the source (names are "
                                "case-sensitive): check the spelling")
            chosen |= hits
        schemas = frozenset(chosen)
    # Only --exclude-table needs the relations' children and owned sequences.
    relations = ([r for r in catalog.list_relations(conn) if schemas is None or r.schema in schemas]
                 if selection.exclude_tables else [])
    by_oid = {r.oid: r for r in relations}
    excluded: dict[int, catalog.Relation] = {}
    for text in selection.exclude_tables:
        parts = compile_pattern(text, qualified=True)
        matched = [r for r in relations if _matches(parts, r)]
        if not matched and strict:
            where = "the selected schemas" if schemas is not None else "the source"
            raise UserError(f"--exclude-table {text!r} matches no table in {where}: {_SYNTAX}")
        pending = list(matched)
        while pending:
            relation = pending.pop()
            if relation.oid not in excluded:
                excluded[relation.oid] = relation
                pending.extend(by_oid[c] for c in relation.children if c in by_oid)
    views: list[tuple[str, str]] = []
    if excluded:
        views = [v for v in catalog.dependent_views(conn, list(excluded))
                 if schemas is None or v[0] in schemas]
        keys = [k for k in catalog.foreign_keys_into(conn, list(excluded))
                if schemas is None or k[0] in schemas]
        if keys and strict:
            named = ", ".join(f"{s}.{t} ({k})" for s, t, k in keys[:5])
            raise UserError(f"--exclude-table leaves out tables that foreign keys of selected "
                            f"tables reference: {named}; exclude those tables too, or keep the "
                            "tables they reference")
    result = Resolved(
        schemas=schemas,
        excluded=frozenset([(r.schema, r.name) for r in excluded.values()] + views),
        excluded_sequences=frozenset(s for r in excluded.values() for s in r.owned_sequences),
    )
    return replace(result, tables=tuple(catalog.list_tables(conn, result.covers)))


def _matches(parts: tuple[re.Pattern[str], ...], relation: catalog.Relation) -> bool:
    if len(parts) == 1:
        return parts[0].fullmatch(relation.name) is not None
    return (parts[0].fullmatch(relation.schema) is not None
            and parts[1].fullmatch(relation.name) is not None)
