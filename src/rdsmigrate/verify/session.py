"""Read-only sessions on one side of a verification: one snapshot, pinned output, parallel workers.

Every connection of a side reads the same instant: a coordinator opens a ``REPEATABLE READ READ
ONLY`` transaction and exports its snapshot, and each worker imports it, so a table split into
chunks across workers is checksummed as one consistent state even while the database is written.
Where exporting is refused (some managed read replicas), each worker reads its own snapshot and the
report says so, because then only a quiescent database verifies cleanly.

Text output is pinned identically on both sides, because the checksums hash the text of every
value that is not hashed in its binary form (numeric, float, json, ... or the whole row under md5):
the same value must print the same on a PostgreSQL 15 source and an 18 target whatever their
``postgresql.conf`` or RDS parameter group says.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError

T = TypeVar("T")

PINNED_SETTINGS: dict[str, str] = {
    # Shortest exact float text (the default since PG 12, but a server may set 0 or less).
    "extra_float_digits": "3",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    # timestamptz prints in the session's zone: pin it so 12:00+02 and 10:00Z compare equal.
    "TimeZone": "UTC",
    "bytea_output": "hex",
    # money prints with the locale's symbol and separators.
    "lc_monetary": "C",
    # regclass, regproc and friends print schema-qualified only outside search_path.
    "search_path": "",
    # A checksum of a large chunk is one long statement; a server-wide limit must not abort it.
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    # Compiling each chunk's aggregate bought nothing when measured (see the module docstring
    # of rdsmigrate.verify), and a server that JITs small chunks only pays the compile time.
    "jit": "off",
}


def pin_settings(conn: psycopg.Connection[Any]) -> None:
    """Session-level ``set_config`` of :data:`PINNED_SETTINGS` in one round trip."""
    conn.execute(
        "SELECT pg_catalog.set_config(k, v, false) FROM unnest(%s::text[], %s::text[]) AS s(k, v)",
        [list(PINNED_SETTINGS), list(PINNED_SETTINGS.values())],
    )


class Side:
    """One database of the comparison: a coordinator connection and ``jobs`` worker threads.

    The coordinator lists tables, sequences and large objects inside the exported snapshot; the
    workers (each its own connection, so both servers compute in parallel) run checksums. psycopg
    releases the GIL while a query runs, so threads are enough: the work happens in the servers.
    """

    def __init__(self, endpoint: Endpoint, jobs: int) -> None:
        self.endpoint = endpoint
        self.conn = connect(endpoint, autocommit=True)
        try:
            self._start(jobs)
        except BaseException:
            self.conn.close()
            raise

    def _start(self, jobs: int) -> None:
        self.snapshot: str | None = None
        self.snapshot_problem: str | None = None
        self._begin(self.conn)
        try:
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
            self.snapshot = str(row[0]) if row else None
        except psycopg.Error as exc:
            self.snapshot_problem = str(exc).strip().splitlines()[0]
            self.conn.execute("ROLLBACK")
            self._begin(self.conn)
        pin_settings(self.conn)
        row = self.conn.execute(
            "SELECT current_setting('server_encoding'), current_setting('server_version_num')::int"
        ).fetchone()
        assert row is not None
        self.encoding = str(row[0])
        self.version_num = int(row[1])
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: list[psycopg.Connection[Any]] = []
        self._failure: Exception | None = None
        self._pool = ThreadPoolExecutor(max_workers=jobs,
                                        thread_name_prefix=f"verify-{self.endpoint.role}")

    @staticmethod
    def _begin(conn: psycopg.Connection[Any]) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _worker_conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.endpoint, autocommit=True)
            with self._lock:
                self._workers.append(conn)
            self._begin(conn)
            if self.snapshot is not None:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
            pin_settings(conn)
            self._local.conn = conn
        return conn

    def submit(self, fn: Callable[[psycopg.Connection[Any]], T], what: str) -> Future[T]:
        """Run ``fn`` on a worker with that worker's connection; ``what`` it reads, for errors."""
        def job() -> T:
            if self._failure is not None:
                raise self._failure
            try:
                with self.reading(what):
                    return fn(self._worker_conn())
            except Exception as exc:
                # The failed worker's transaction is aborted, so later jobs on it fail too:
                # whichever the caller looks at first, it must see the cause.
                with self._lock:
                    self._failure = self._failure or exc
                raise self._failure from None
        return self._pool.submit(job)

    @contextlib.contextmanager
    def reading(self, what: str) -> Iterator[None]:
        """A missing privilege is the user's to fix: say which side, what, and the grant."""
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as exc:
            ep = self.endpoint
            raise UserError(ep.redact(
                f"{ep.role} {ep.describe()}: cannot read {what} "
                f"({str(exc).strip().splitlines()[0]}): GRANT SELECT on it to {ep.user}, "
                "or verify as its owner")) from None

    def cancel(self) -> None:
        """Stop queries in flight (on an error elsewhere or Ctrl-C) so that closing is quick."""
        with self._lock:
            conns = list(self._workers)
            # Jobs that a worker picks up from now on stop before sending anything.
            self._failure = self._failure or RuntimeError("verification stopped")
        for conn in conns:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in [*self._workers, self.conn]:
            conn.close()

    def __enter__(self) -> Side:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.cancel()
        self.close()
