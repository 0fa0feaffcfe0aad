"""The three objects PostgreSQL's logical replication needs, created and removed in one place.

- the **publication** on the source names what is replicated; created *before* the slot, because
  pgoutput reads the publication through the historic catalog snapshot of each change, and a
  publication created after the slot's start is invisible to the WAL before it;
  ``publish_via_partition_root = false`` so partition leaves replicate as themselves (the target
  has the same leaves, created by the copy's schema step);
- the **slot** on the source, created by the copy (its exported snapshot is what the copy read);
- the **subscription** on the target, attached to that existing slot with ``copy_data = false``,
  so streaming starts exactly at the copy's snapshot: nothing lost, nothing applied twice.

One name serves all three. It starts with :data:`SLOT_PREFIX`, which is how ``abort`` finds them
when the state record is gone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from rdsmigrate.copy.snapshot import SLOT_PREFIX
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, redact_secrets
from rdsmigrate.errors import UserError

# LIKE pattern of every object this tool names (the underscore escaped: it is a LIKE wildcard).
NAME_LIKE = SLOT_PREFIX.replace("_", "\\_") + "%"


def create_publication(conn: psycopg.Connection[Any], name: str,
                       tables: Sequence[catalog.Table] | None) -> None:
    """``FOR ALL TABLES`` (tables created later included, which drift detection then names), or
    the listed tables when the migration is limited to some schemas or excludes some tables."""
    if tables is None:
        target: sql.Composable = sql.SQL("FOR ALL TABLES")
    else:
        if not tables:
            raise UserError("no table is selected: nothing to replicate (check --schema and "
                            "--exclude-table)")
        target = sql.SQL("FOR TABLE {}").format(sql.SQL(", ").join(t.ident for t in tables))
    conn.execute(sql.SQL("CREATE PUBLICATION {} {} WITH (publish_via_partition_root = false)")
                 .format(sql.Identifier(name), target))


def subscription_conninfo(source: Endpoint) -> str:
    """The source's connection string as the target server will use it.

    The target server has neither our environment nor our ``.pgpass``: a password given to us
    through ``PGPASSWORD`` is put into the string, which PostgreSQL stores in ``pg_subscription``
    (readable by superusers only). Our own application_name is removed so the walsender carries
    the subscription's name, which is how ``status`` finds it in ``pg_stat_replication``.
    """
    params = source.params
    if not params.get("password") and os.environ.get("PGPASSWORD"):
        params["password"] = os.environ["PGPASSWORD"]
    params.pop("application_name", None)
    params.pop("fallback_application_name", None)
    return pg_conninfo.make_conninfo("", **params)


def create_subscription(conn: psycopg.Connection[Any], name: str, source: Endpoint) -> None:
    """Attach a subscription to the existing slot, streaming from the slot's start.

    The statement carries the source password, and a failed statement is written to the server
    log with ``log_min_error_statement`` (``log_statement = ddl`` logs it even on success): both
    are switched off for this session where the role may do so (superusers; not on RDS, where the
    log is only readable by the account's administrators).
    """
    for setting, value in (("log_statement", "none"), ("log_min_error_statement", "panic")):
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", [setting, value])
    statement = sql.SQL(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (create_slot = false, "
        "slot_name = {}, copy_data = false, enabled = true, streaming = off)"
    ).format(sql.Identifier(name), sql.Literal(subscription_conninfo(source)),
             sql.Identifier(name), sql.Literal(name))
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        raise UserError(
            "creating the subscription on the target failed: "
            f"{redact_secrets(source.redact(str(exc).strip()))}. The target server itself must "
            f"reach the source at {source.describe()} (pg_hba.conf on the source must allow a "
            "replication connection from the target, and on RDS the security groups), and the "
            "target user needs superuser, rds_superuser or (PostgreSQL 16+) pg_create_subscription"
        ) from None


@dataclass(frozen=True)
class Leftovers:
    """Objects named like ours that exist right now."""

    subscriptions: tuple[str, ...]
    slots: tuple[str, ...]
    publications: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.slots or self.publications)


def find(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any]) -> Leftovers:
    """Our subscriptions in the target database, our slots on the source database and our
    publications in it, found by name."""
    subs = tgt.execute(
        "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND subname LIKE %s ORDER BY 1", [NAME_LIKE]
    ).fetchall()
    slots = src.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE database = current_database() "
        "AND slot_name LIKE %s ORDER BY 1", [NAME_LIKE]
    ).fetchall()
    pubs = src.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s ORDER BY 1",
                       [NAME_LIKE]).fetchall()
    return Leftovers(tuple(r[0] for r in subs), tuple(r[0] for r in slots),
                     tuple(r[0] for r in pubs))


def drop_subscription(conn: psycopg.Connection[Any], name: str) -> bool:
    """Remove the subscription but not its slot (the slot is dropped on the source directly).

    ``DROP SUBSCRIPTION`` would otherwise connect to the source to drop the slot itself, which
    fails when the source is unreachable; disabling first stops the apply worker, and
    ``slot_name = NONE`` detaches the slot (both are what PostgreSQL documents for this case).
    Returns whether there was one to drop.
    """
    exists = conn.execute(
        "SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = (SELECT oid FROM "
        "pg_database WHERE datname = current_database())", [name]).fetchone()
    if not exists:
        return False
    detach_slot(conn, name)
    # IF EXISTS: another command (a killed cutover's last statement) may have dropped it meanwhile.
    conn.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name)))
    return True


def detach_slot(conn: psycopg.Connection[Any], name: str) -> None:
    """Stop the subscription's worker and forget its slot, so that dropping it needs no
    connection to the source (and may run inside a transaction)."""
    ident = sql.Identifier(name)
    try:
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    except psycopg.errors.UndefinedObject:
        pass  # dropped meanwhile


def drop_slot(conn: psycopg.Connection[Any], name: str, timeout_s: float = 30.0,
              linger_s: float = 5.0) -> bool:
    """Drop the slot once no walsender uses it; returns whether there was one to drop.

    A slot cannot be dropped while active, and the walsender on the source takes a moment to
    notice that the subscription's apply worker went away: after ``linger_s`` it is ended.
    """
    started = time.monotonic()
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                           [name]).fetchone()
        if row is None:
            return False
        if row[0] is None:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
                return True
            except psycopg.errors.ObjectInUse:
                pass  # a walsender took it in between
            except psycopg.errors.UndefinedObject:
                return False
        elif time.monotonic() - started > linger_s:
            conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        if time.monotonic() - started > timeout_s:
            raise UserError(f"replication slot {name} on the source is still in use after "
                            f"{timeout_s:.0f} s: drop it with SELECT pg_drop_replication_slot("
                            f"'{name}') once its walsender has exited")
        time.sleep(0.05)


def drop_publication(conn: psycopg.Connection[Any], name: str) -> bool:
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone()
    if exists:
        # IF EXISTS: a killed cutover's DROP may still finish between the check and this one.
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
    return exists is not None


def wait_streaming(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], name: str,
                   timeout_s: float) -> None:
    """Until the subscription's apply worker runs on the target and its walsender holds the
    slot on the source; a worker that keeps failing is reported with where to read why."""
    deadline = time.monotonic() + timeout_s
    while True:
        worker = tgt.execute(
            "SELECT pid FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL "
            "AND pid IS NOT NULL", [name]).fetchone()
        slot = src.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                           [name]).fetchone()
        if worker and slot and slot[0]:
            return
        if time.monotonic() > deadline:
            raise UserError(
                f"the subscription {name} is not streaming after {timeout_s:.0f} s (apply worker "
                f"{'running' if worker else 'not running'}, slot "
                f"{'active' if slot and slot[0] else 'inactive'}): the target server's log says "
                "why (lines with 'logical replication'); `rdsmigrate abort` removes what was "
                "created"
            )
        time.sleep(0.1)
