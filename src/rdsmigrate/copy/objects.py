"""The rest of what a database holds besides table rows: sequences and large objects.

Neither is in a schema-only dump's data: sequence positions are set with ``setval`` (every
sequence, owned by a column or not, with ``is_called`` so the next ``nextval`` matches the
source's), and large objects are copied in bounded pieces with ``lo_get``/``lo_put`` so memory
does not grow with their size. Both are read inside the copy's snapshot.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rdsmigrate.db import catalog
from rdsmigrate.progress import Reporter

LO_PIECE = 1 << 20


def copy_sequences(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
                   schemas: tuple[str, ...]) -> int:
    sequences = catalog.list_sequences(src, schemas)
    with tgt.transaction():
        for seq in sequences:
            last_value, is_called = catalog.sequence_state(src, seq)
            tgt.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)",
                        [seq.ident.as_string(tgt), last_value, is_called])
    return len(sequences)


def copy_large_objects(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
                       reporter: Reporter) -> tuple[int, int]:
    """Recreate every large object with the same OID; returns (count, bytes)."""
    oids = [r[0] for r in src.execute(
        "SELECT oid FROM pg_largeobject_metadata ORDER BY oid").fetchall()]
    total = 0
    with tgt.transaction():
        for oid in oids:
            tgt.execute("SELECT lo_unlink(%s) FROM pg_largeobject_metadata WHERE oid = %s", [oid, oid])
            tgt.execute("SELECT lo_create(%s)", [oid])
            offset = 0
            while True:
                row = src.execute("SELECT lo_get(%s, %s, %s)", [oid, offset, LO_PIECE]).fetchone()
                piece = bytes(row[0]) if row and row[0] is not None else b""
                if not piece:
                    break
                tgt.execute("SELECT lo_put(%s, %s, %s)", [oid, offset, piece])
                offset += len(piece)
                total += len(piece)
                if len(piece) < LO_PIECE:
                    break
    if oids:
        reporter.info(f"large objects: {len(oids)} copied")
    return len(oids), total
