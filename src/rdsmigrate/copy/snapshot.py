"""The one instant of the source that the whole copy reads.

The snapshot comes from creating a logical replication slot with ``EXPORT_SNAPSHOT``: the slot's
starting point and the snapshot are the same instant, so an online migration can stream changes
from exactly where the copy left off, with nothing lost or applied twice. Every worker, and
``pg_dump``, imports it with ``SET TRANSACTION SNAPSHOT``. The exporting session must stay open and
idle until they all have, so :class:`SourceSnapshot` holds it for the duration of the copy.

Where logical decoding is unavailable (``wal_level`` below ``logical``, or a user without the
REPLICATION attribute), a plain ``pg_export_snapshot()`` gives the same consistency for an
offline copy, and the caller is told that no change stream can follow.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError

SLOT_PREFIX = "rdsmigrate_"


@dataclass
class SourceSnapshot:
    snapshot_id: str
    slot_name: str | None
    """The replication slot the snapshot came from; None for the plain-export fallback."""
    consistent_lsn: str | None
    fallback_reason: str | None
    _conn: psycopg.Connection[Any] | None = field(default=None, repr=False)

    def close(self) -> None:
        """End the exporting session; a temporary slot disappears with it."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SourceSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_slot_name() -> str:
    return SLOT_PREFIX + secrets.token_hex(4)


def take(source: Endpoint, *, slot_name: str | None = None, temporary: bool = True) -> SourceSnapshot:
    """Export a snapshot from a new logical slot, or fall back to ``pg_export_snapshot()``.

    ``temporary`` slots vanish when the session ends, so a copy that is not followed by
    replication never leaves a slot holding WAL on the source.
    """
    name = slot_name or new_slot_name()
    # Whether the slot can be made (wal_level, REPLICATION or the RDS roles, free slots and
    # walsenders) is preflight's to explain; here the server's own answer decides.
    reason = _create_slot(source, name, temporary)
    if isinstance(reason, SourceSnapshot):
        return reason
    conn = connect(source, autocommit=True)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return SourceSnapshot(str(row[0]), None, None, reason, conn)


def _create_slot(source: Endpoint, name: str, temporary: bool) -> SourceSnapshot | str:
    """The slot's snapshot, held open; or why the server would not make the slot."""
    try:
        conn = connect(source, autocommit=True, replication="database")
    except UserError as exc:  # e.g. "must be superuser or replication role"
        return f"a replication connection was refused ({exc})"
    kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
    # Walsender commands only speak the simple query protocol: use libpq's PQexec directly.
    res = conn.pgconn.exec_(f"CREATE_REPLICATION_SLOT {name} {kind} pgoutput EXPORT_SNAPSHOT".encode())
    if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
        message = (res.error_message or b"").decode(errors="replace").strip()
        conn.close()
        return f"creating a logical replication slot failed ({message})"
    lsn = (res.get_value(0, 1) or b"").decode()
    snap = (res.get_value(0, 2) or b"").decode()
    return SourceSnapshot(snap, name, lsn, None, conn)


def import_into(conn: psycopg.Connection[Any], snapshot_id: str) -> None:
    """Start a read-only transaction on ``conn`` (an autocommit connection, so that psycopg does
    not open one itself) that sees exactly the exported snapshot."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(f"SET TRANSACTION SNAPSHOT '{_checked(snapshot_id)}'".encode())


def _checked(snapshot_id: str) -> str:
    # Snapshot ids look like 00000003-00000002-1; SET TRANSACTION SNAPSHOT takes no parameters.
    if not all(c in "0123456789ABCDEFabcdef-" for c in snapshot_id):
        raise ValueError(f"unexpected snapshot id {snapshot_id!r}")
    return snapshot_id
