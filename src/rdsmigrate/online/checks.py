"""What the online path needs beyond what the copy needs, checked before anything is created.

- ``wal_level = logical`` on the source (``rds.logical_replication = 1`` on RDS): without it no
  logical slot can exist;
- a source role that may replicate (superuser, REPLICATION, or ``rds_superuser`` on RDS), a free
  replication slot and a free walsender;
- a target role that may create a subscription (superuser, ``rds_superuser``, or on PostgreSQL
  16+ a member of ``pg_create_subscription``) and logical replication workers on the target;
- every replicated table can carry UPDATE and DELETE: PostgreSQL refuses those statements on a
  published table without a replica identity ("cannot update table ... because it does not have a
  replica identity and publishes updates"), which would break the application on the source, so
  such tables are refused unless the user consents to ``REPLICA IDENTITY FULL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from rdsmigrate.db import catalog
from rdsmigrate.db.tools import server_major


@dataclass(frozen=True)
class Roles:
    superuser: bool
    may_replicate: bool


def _role_flags(conn: psycopg.Connection[Any], extra_role: str | None) -> tuple[bool, bool, bool]:
    """(superuser, replication, member of ``extra_role`` or of rds_superuser)."""
    row = conn.execute(
        """SELECT r.rolsuper, r.rolreplication,
                  EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = ANY(%s::text[])
                           AND pg_has_role(current_user, g.oid, 'member'))
             FROM pg_roles r WHERE r.rolname = current_user""",
        [["rds_superuser", *([extra_role] if extra_role else [])]],
    ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1]), bool(row[2])


def source_roles(conn: psycopg.Connection[Any]) -> Roles:
    superuser, replication, rds = _role_flags(conn, None)
    return Roles(superuser=superuser, may_replicate=superuser or replication or rds)


def blockers(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
             tables: Sequence[catalog.Table], replica_identity_full: bool) -> list[str]:
    """Every reason the online migration cannot start, each with its fix."""
    found: list[str] = []
    wal_level = src.execute("SELECT current_setting('wal_level')").fetchone()
    if not wal_level or wal_level[0] != "logical":
        found.append(f"the source has wal_level={wal_level[0] if wal_level else '?'}: set "
                     "wal_level=logical and restart (on RDS: rds.logical_replication=1 in the "
                     "parameter group, then reboot)")
    if not source_roles(src).may_replicate:
        found.append("the source user may not replicate: ALTER ROLE .. REPLICATION (on RDS: "
                     "GRANT rds_replication or rds_superuser)")
    row = src.execute(
        """SELECT current_setting('max_replication_slots')::int
                  - (SELECT count(*) FROM pg_replication_slots),
                  current_setting('max_wal_senders')::int
                  - (SELECT count(*) FROM pg_stat_replication)"""
    ).fetchone()
    assert row is not None
    if row[0] < 1:
        found.append("the source has no free replication slot: raise max_replication_slots, or "
                     "drop unused slots (SELECT slot_name FROM pg_replication_slots)")
    if row[1] < 1:
        found.append("the source has no free walsender: raise max_wal_senders")
    target_major = server_major(tgt.info.server_version)
    superuser, _, allowed = _role_flags(tgt, "pg_create_subscription" if target_major >= 16 else None)
    if not (superuser or allowed):
        found.append("the target user may not create a subscription: make it superuser (on RDS: "
                     "GRANT rds_superuser)" + (", or GRANT pg_create_subscription" if target_major >= 16 else ""))
    workers = tgt.execute("SELECT current_setting('max_logical_replication_workers')::int").fetchone()
    if not workers or workers[0] < 1:
        found.append("the target has max_logical_replication_workers=0: raise it and restart")
    missing = without_identity(tables)
    if missing and not replica_identity_full:
        names = ", ".join(t.qualified for t in missing[:20]) + (" ..." if len(missing) > 20 else "")
        found.append(
            f"{len(missing)} table(s) have no primary key or replica identity, so their UPDATEs "
            f"and DELETEs cannot replicate (and would fail on the source once published): "
            f"{names}. Add a primary key, or rerun with --replica-identity-full to set REPLICA "
            "IDENTITY FULL on them (every update then logs the whole old row)"
        )
    return found


def without_identity(tables: Sequence[catalog.Table]) -> list[catalog.Table]:
    return [t for t in tables if not t.can_replicate_changes]
