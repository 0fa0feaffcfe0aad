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
import re
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


# Parameters naming files on this machine: the target server cannot open them (on RDS it has no
# file of ours at all), so the subscription never carries them.
_LOCAL_ONLY = ("passfile", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir",
               "sslpassword", "service", "servicefile")
# What the subscription carries: parameters every libpq since PostgreSQL 10 knows. The runner's
# libpq may be newer than the target server's, which rejects a parameter it does not know
# ("invalid connection option"), so nothing else is passed on; our application_name least of all
# (the walsender then carries the subscription's name, which is how status finds it).
_CARRIED = ("host", "hostaddr", "port", "dbname", "user", "sslmode", "connect_timeout", "options",
            "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
            "target_session_attrs", "krbsrvname", "requirepeer")
_VERIFYING = ("verify-ca", "verify-full")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class SubscriptionSource:
    """How the target server reaches the source: the subscription's connection string (with the
    password in it: never shown, never recorded) and what was changed from the runner's view."""

    conninfo: str
    notes: tuple[str, ...]
    has_password: bool


def host_port(text: str) -> tuple[str, str | None]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``; a UserError naming the form otherwise."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"--source-as-seen-by-target {text!r} is not HOST[:PORT] (an IPv6 "
                        "address in brackets: [::1]:5432)")
    host = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4)
    if port is not None and not 0 < int(port) < 65536:
        raise UserError(f"--source-as-seen-by-target: port {port} is out of range")
    return host, port


def subscription_source(params: dict[str, str], password: str | None, *,
                        seen_by_target: str | None = None,
                        sslmode: str | None = None) -> SubscriptionSource:
    """The source's connection string as the target server will use it.

    ``params`` are the parameters the runner's connection actually used (libpq's
    ``PQconninfo``: the connection string, the environment and a service file resolved), and
    ``password`` the one it sent (``PQpass``: from the URL, ``PGPASSWORD`` or ``.pgpass`` alike):
    the target server has neither our environment nor our files, and PostgreSQL 16+ refuses a
    subscription without a password for a non-superuser owner. PostgreSQL keeps the string in
    ``pg_subscription``, readable by superusers only.

    ``seen_by_target`` (HOST[:PORT]) replaces host and port when the target reaches the source by
    another address than the runner (a tunnel or a localhost forward on the runner's side).
    ``sslmode`` replaces the runner's. File parameters (``sslrootcert``...) are dropped; a
    verifying sslmode without its own ``sslmode`` is refused, since the target server would
    verify with a root certificate of its own, which an RDS target does not have for an outside
    CA: ``require`` (encrypted, not verified) is what an RDS subscription can use.
    """
    kept = {k: v for k, v in params.items() if k in _CARRIED and v != ""}
    notes = [f"the subscription does not carry {k}={params[k]}: a file on this machine, which the "
             "target server cannot open" for k in _LOCAL_ONLY
             if params.get(k) and k not in ("service", "passfile")]  # its password is carried
    if sslmode is not None:
        if sslmode not in SSLMODES:
            raise UserError(f"--subscription-sslmode {sslmode!r}: use one of {', '.join(SSLMODES)}")
        kept["sslmode"] = sslmode
    elif kept.get("sslmode") in _VERIFYING:
        raise UserError(
            f"the source connection uses sslmode={kept['sslmode']}, but the subscription's "
            "connection is made by the target server, which has none of this machine's "
            "certificate files (on RDS none at all for an outside CA): pass "
            "--subscription-sslmode require (encrypted, the source not verified: what an RDS "
            "target can use), or --subscription-sslmode verify-full if the target server holds "
            "the source's CA in its own root.crt")
    if seen_by_target:
        host, port = host_port(seen_by_target)
        kept.pop("hostaddr", None)
        kept["host"] = host
        if port:
            kept["port"] = port
        notes.append(f"the target server reaches the source at {seen_by_target} "
                     "(--source-as-seen-by-target)")
    if password:
        kept["password"] = password
    return SubscriptionSource(pg_conninfo.make_conninfo("", **kept), tuple(notes), bool(password))


def subscription_source_of(conn: psycopg.Connection[Any], *, seen_by_target: str | None = None,
                           sslmode: str | None = None) -> SubscriptionSource:
    """:func:`subscription_source` from the runner's open connection to the source."""
    return subscription_source(conn.info.get_parameters(), conn.info.password,
                               seen_by_target=seen_by_target, sslmode=sslmode)


def create_subscription(conn: psycopg.Connection[Any], name: str, source: Endpoint,
                        reached: SubscriptionSource) -> None:
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
    ).format(sql.Identifier(name), sql.Literal(reached.conninfo),
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
