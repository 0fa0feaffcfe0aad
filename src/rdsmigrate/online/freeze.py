"""Stopping and restarting writes on the source database, for every role.

How, and the limits of it (PostgreSQL has no "read-only database" switch short of stopping it):

1. ``ALTER DATABASE .. SET default_transaction_read_only = on``: every session that starts from
   now on begins each transaction read-only, whoever its role, so its writes fail with
   SQLSTATE 25006 ("cannot execute INSERT in a read-only transaction"), an error the application
   sees. ``nextval`` is refused too, so sequences stop where they are.
2. Every client backend of the database that started before that commit is terminated (it read
   the old default when it started): its open transaction rolls back and the application sees the
   connection end. The replication walsenders are kept (they carry the last changes to the
   target), as are this tool's own sessions (application_name ``rdsmigrate``).
3. Re-checked: no client backend started before the freeze remains, and no prepared transaction.

What it does not stop: a client that explicitly asks for a read-write transaction
(``SET default_transaction_read_only = off``, ``BEGIN READ WRITE``); applications do not, in
practice. Blocking connections instead (``ALLOW_CONNECTIONS false``, ``CONNECTION LIMIT 0``,
revoking CONNECT) was rejected: it would also block the logical walsender the subscription may
need to reconnect with (and ``ALLOW_CONNECTIONS`` this tool), and it turns every application
request into a connection storm rather than one clear error per write. A write that slips
through may or may not reach the target before the subscription is dropped: the cutover's count
check catches it only when it changes a count and had not arrived.

Prepared transactions (two-phase commit) outlive their sessions and can still commit: the freeze
fails while the database has any, rather than let one commit after the target caught up.

Unfreezing is ``ALTER DATABASE .. RESET default_transaction_read_only``, in a transaction that
asks for read-write itself (:func:`unfreeze_sql`): a session opened in the frozen database starts
read-only, and ``ALTER DATABASE`` is refused in a read-only transaction.

Only a superuser may end a superuser's session (``rdsadmin`` on RDS): such a session is named as
what blocks the freeze, not as a privilege the tool's user lacks.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db.connect import APPLICATION_NAME
from rdsmigrate.errors import UserError

SETTING = "default_transaction_read_only"


def writable(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Make this tool's own session writable whether or not the database is frozen."""
    conn.execute(sql.SQL("SET {} = off").format(sql.Identifier(SETTING)))
    return conn


def unfreeze_sql(dbname: str) -> str:
    """The SQL that reopens the database, working as printed from any database, the frozen one
    included (``BEGIN READ WRITE`` overrides the read-only default there)."""
    return (f"BEGIN READ WRITE; ALTER DATABASE {sql.Identifier(dbname).as_string()} "
            f"RESET {SETTING}; COMMIT")


def unfreeze_command(dbname: str) -> str:
    """A command to paste: psql connected to ``postgres``, for the frozen database's name."""
    return f"psql -d postgres -c {shlex.quote(unfreeze_sql(dbname))}"


@dataclass(frozen=True)
class Frozen:
    at: datetime
    """Server time when new sessions became read-only."""
    terminated: int
    """Client sessions ended because they began before the freeze."""


# A role without pg_read_all_stats sees NULL in backend_start, backend_type and
# application_name of other roles' sessions (a superuser's included): such a session cannot be
# shown to have started after the freeze, so it counts as old.
_OLD_SESSIONS_SQL = """
SELECT a.pid, a.usename, coalesce(r.rolsuper, false) FROM pg_stat_activity a
  LEFT JOIN pg_roles r ON r.oid = a.usesysid
 WHERE datname = current_database() AND coalesce(backend_type, 'client backend') = 'client backend'
   AND pid <> pg_backend_pid() AND (backend_start <= %s OR backend_start IS NULL)
   AND coalesce(application_name, '') <> %s
"""


def freeze(conn: psycopg.Connection[Any], dbname: str, timeout_s: float = 10.0) -> Frozen:
    """Freeze writes as described above; raises UserError (the caller unfreezes) when a session
    that could still write cannot be ended in time."""
    conn.execute(sql.SQL("ALTER DATABASE {} SET {} = on").format(sql.Identifier(dbname),
                                                                 sql.Identifier(SETTING)))
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    at: datetime = row[0]
    terminated: set[int] = set()
    deadline = time.monotonic() + timeout_s
    first: set[int] | None = None
    while True:
        sessions = conn.execute(_OLD_SESSIONS_SQL, [at, APPLICATION_NAME]).fetchall()
        # Every session older than the freeze existed at the first look; one seen only later
        # began after it (read-only), even where its start time is hidden from us.
        if first is None:
            first = {r[0] for r in sessions}
        sessions = [r for r in sessions if r[0] in first]
        old = [r[0] for r in sessions]
        if not old:
            _refuse_prepared(conn, dbname)
            return Frozen(at, len(terminated))
        if time.monotonic() > deadline:
            raise UserError(_cannot_end(dbname, sessions, timeout_s))
        for pid in set(old) - terminated:
            try:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            except psycopg.errors.InsufficientPrivilege:
                continue
            terminated.add(pid)
        time.sleep(0.02)


def _cannot_end(dbname: str, sessions: list[tuple[Any, ...]], timeout_s: float) -> str:
    """Why the sessions are still there: superusers' sessions, which no privilege short of
    superuser may end, are said apart from those a missing privilege of the tool's user spares."""
    supers = [(pid, user) for pid, user, is_super in sessions if is_super]
    others = [(pid, user) for pid, user, is_super in sessions if not is_super]

    def listed(group: list[tuple[Any, Any]]) -> str:
        return ", ".join(f"pid {pid} ({user})" for pid, user in group[:10])

    parts = []
    if supers:
        parts.append(
            f"{len(supers)} session(s) of superuser role(s) {', '.join(sorted({u for _, u in supers}))} "
            f"in database {dbname} began before the freeze and could still write ({listed(supers)}): "
            "only a superuser may end a superuser's session, whatever the tool's privileges (on "
            "RDS, rdsadmin's are the service's own: retry when they have ended); end them from a "
            "superuser session, then run cutover again")
    if others:
        parts.append(
            f"{len(others)} session(s) of database {dbname} that began before the freeze could not "
            f"be ended in {timeout_s:.0f} s ({listed(others)}): the tool's user needs "
            "pg_signal_backend (rds_superuser on RDS) or membership in their roles to end them")
    return "; ".join(parts)


def _refuse_prepared(conn: psycopg.Connection[Any], dbname: str) -> None:
    rows = conn.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
                        ).fetchall()
    if rows:
        raise UserError(
            f"database {dbname} has {len(rows)} prepared transaction(s) ("
            f"{', '.join(r[0] for r in rows[:5])}) that could still commit after the switch: "
            "COMMIT PREPARED or ROLLBACK PREPARED them (see pg_prepared_xacts), then cut over")


def unfreeze(conn: psycopg.Connection[Any], dbname: str) -> None:
    """From a session made :func:`writable` (or in autocommit outside the frozen database)."""
    conn.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(sql.Identifier(dbname),
                                                              sql.Identifier(SETTING)))


def is_frozen(conn: psycopg.Connection[Any]) -> bool:
    """Whether the current database makes new sessions read-only (for all roles)."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d
                            ON d.oid = s.setdatabase
                          WHERE d.datname = current_database() AND s.setrole = 0
                            AND %s = ANY(s.setconfig))""", [f"{SETTING}=on"]).fetchone()
    return bool(row and row[0])
