"""The pre-data schema in several sessions at once, committed together.

``pg_restore`` runs pre-data in one session whatever ``--jobs`` says, and for a schema of many
tables that session is the copy's longest step: one server backend creating every table, its TOAST
table and that table's index (PostgreSQL before 17 also fsyncs each new index file), about 1.5 ms
a table on one core while the other waits. Entries that share no dependency, directly or through
others (in practice: one group per schema), can be created side by side.

Each session runs its groups' entries in the archive's (dependency) order inside one open
transaction. Only once every session has run all of its entries do they commit, one after
another; an error anywhere first rolls every session back. So a failure still leaves nothing
behind, as the single transaction did; what is given up is the instant between the sessions'
commits (milliseconds), where a killed command leaves part of the schema (rerun with
``--replace``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from rdsmigrate import schema
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError

BATCH = 100
"""Entries sent per round trip (an entry costs about a millisecond on the server)."""


def groups(entries: Sequence[schema.Entry]) -> list[list[schema.Entry]]:
    """``entries`` split into groups that share no dependency, each in archive order; groups
    ordered by their first entry.

    A dependency on an entry that is not being restored (the target's own ``public`` schema) joins
    nothing: the object exists before the restore starts.
    """
    parent = {e.dump_id: e.dump_id for e in entries}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for entry in entries:
        for dep in entry.deps:
            if dep in parent:
                a, b = root(entry.dump_id), root(dep)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    by_root: dict[int, list[schema.Entry]] = {}
    for entry in entries:
        by_root.setdefault(root(entry.dump_id), []).append(entry)
    return list(by_root.values())


def assign(entries: Sequence[schema.Entry], sessions: int) -> list[list[schema.Entry]]:
    """``entries``' groups dealt to ``sessions`` sessions, largest first to the least loaded one
    (entries counted); each session's entries in archive order, which is not dump id order (a
    view may have been made before the table it reads was made again)."""
    position = {e.dump_id: i for i, e in enumerate(entries)}
    loads = [0] * sessions
    dealt: list[list[schema.Entry]] = [[] for _ in range(sessions)]
    for part in sorted(groups(entries), key=len, reverse=True):
        i = loads.index(min(loads))
        dealt[i] += part
        loads[i] += len(part)
    for share in dealt:
        share.sort(key=lambda e: position[e.dump_id])
    return [share for share in dealt if share]


def restore(archive: schema.SchemaArchive, target: Endpoint, workdir: Path, *, roles: bool,
            target_conn: psycopg.Connection[Any], jobs: int,
            ready: Callable[[], None] = lambda: None) -> bool:
    """Restore pre-data with all-or-nothing semantics in up to ``jobs`` sessions (see the module);
    returns whether it was all-or-nothing (see :func:`rdsmigrate.schema.restore_pre_data`, whose
    single ``pg_restore`` transaction is used for an archive whose text is not UTF-8 or ASCII,
    and whose pieces are used when the target's lock table cannot hold the whole schema).
    ``ready`` is called once the entries are read, before anything is restored."""
    fits = schema.fits_one_transaction(archive, target_conn, roles=roles)
    entries = schema.script_entries(archive, section="pre-data", roles=roles) if fits else None
    ready()
    if not fits:
        return schema.restore_pre_data(archive, target, workdir, roles=roles,
                                       target_conn=target_conn, atomic=False)
    if entries is None:
        return schema.restore_pre_data(archive, target, workdir, roles=roles,
                                       target_conn=target_conn, atomic=True)
    if not entries:  # a database of large objects only, say
        return True
    try:
        _Sessions(target, assign(entries, max(1, jobs))).run()
    except UserError as exc:
        if "out of shared memory" not in str(exc):
            raise
        # Rolled back whole; other sessions' locks left too few: go on in pieces.
        return schema.restore_pre_data(archive, target, workdir, roles=roles,
                                       target_conn=target_conn, atomic=False)
    return True


class _Sessions:
    """One session (and thread) per share of entries; every transaction stays open until all of
    them have run their entries, then all commit, or all are rolled back."""

    def __init__(self, target: Endpoint, shares: list[list[schema.Entry]]) -> None:
        self.target = target
        self.shares = shares
        self.conns: list[psycopg.Connection[Any]] = []
        self.lock = threading.Lock()
        self.failed = threading.Event()

    def run(self) -> None:
        pool = ThreadPoolExecutor(max_workers=len(self.shares),
                                  thread_name_prefix="rdsmigrate-pre-data")
        try:
            try:
                futures = [pool.submit(self._work, share) for share in self.shares]
                errors = [f.exception() for f in futures]
            except BaseException:  # Ctrl-C, a signal: the sessions' statements are cancelled
                self._fail()
                raise
            finally:
                pool.shutdown(wait=True)
            first = next((e for e in errors if isinstance(e, UserError)), None) or next(
                (e for e in errors if e is not None), None)
            if first is not None:
                raise first
            self._commit()
        finally:
            for conn in self.conns:
                conn.close()  # an open transaction is rolled back by the server

    def _work(self, entries: list[schema.Entry]) -> None:
        try:
            conn = connect(self.target, autocommit=True)
            with self.lock:
                self.conns.append(conn)
            schema.prepare_session(conn, defer_flush=False)
            conn.execute(b"BEGIN")
            for first in range(0, len(entries), BATCH):
                if self.failed.is_set():
                    return
                self._run_batch(conn, entries[first:first + BATCH])
        except BaseException:
            self._fail()
            raise

    def _run_batch(self, conn: psycopg.Connection[Any], batch: list[schema.Entry]) -> None:
        """One round trip inside a savepoint; on an error the batch runs again an entry at a
        time from that savepoint, so the error names the entry it came from."""
        script = [b"SAVEPOINT rdsmigrate_batch", *schema.entries_script(conn, batch),
                  b"RELEASE SAVEPOINT rdsmigrate_batch"]
        try:
            # Each statement ends on a line of its own: a body ending in a comment cannot
            # swallow the separator.
            conn.execute(b"\n;\n".join(script))
            return
        except psycopg.Error as exc:
            if self.failed.is_set() or isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            conn.execute(b"ROLLBACK TO SAVEPOINT rdsmigrate_batch")
        for entry in batch:
            try:
                conn.execute(b"\n;\n".join(schema.entries_script(conn, [entry])))
            except psycopg.Error as exc:
                raise self._failure(entry, exc) from exc
        raise UserError(f"restoring the pre-data schema on target {self.target.describe()} "
                        "failed in a batch whose entries then all ran: rerun the same command "
                        "(nothing was restored)")

    def _failure(self, entry: schema.Entry, exc: psycopg.Error) -> UserError:
        detail = self.target.redact((exc.diag.message_primary or str(exc)).strip())
        return UserError(
            f"restoring the pre-data schema on target {self.target.describe()} failed at "
            f"{entry.describe()}: {detail}. Fix the cause (a missing role or extension is the "
            "usual one: see rdsmigrate preflight), then rerun the same command (nothing was "
            "restored: one transaction)")

    def _fail(self) -> None:
        """Stop the other sessions: their statements are cancelled, their transactions go."""
        if self.failed.is_set():
            return
        self.failed.set()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=5)

    def _commit(self) -> None:
        committed = 0
        try:
            for conn in self.conns:
                conn.execute(b"COMMIT")
                committed += 1
        except psycopg.Error as exc:
            detail = self.target.redact(str(exc).strip())
            if committed == 0:
                raise UserError(
                    f"restoring the pre-data schema on target {self.target.describe()} failed at "
                    f"its commit: {detail}. Fix the cause, then rerun the same command (nothing "
                    "was restored)") from exc
            raise UserError(
                f"restoring the pre-data schema on target {self.target.describe()} failed while "
                f"its {len(self.conns)} sessions committed, after {committed} of them: "
                f"{detail}. Fix the cause, then rerun with --replace (part of the schema "
                "stays)") from exc
