"""The final post-data pass, ordered so that it can neither race nor deadlock, and the check that
everything it made is valid.

``pg_restore --jobs`` runs entries whose dependencies are met side by side, and two kinds of
entries it considers independent are not:

- two ``ALTER INDEX .. ATTACH PARTITION`` at different levels of one partition tree: the one
  attaching the last leaf marks the middle index valid, the other attaches the middle index to
  the top one and, not seeing that commit, leaves the top index invalid for good (10 of 20
  ``--jobs 4`` copies of PostgreSQL's regression database left ``trigger_parted_pkey`` invalid);
- an attachment against ``ADD FOREIGN KEY`` on the same tree: each locks the tree's tables in
  its own order, and the server ends one of them as a deadlock (about one ``sync`` in six on a
  partitioned schema).

So the pass runs in three phases, each finished before the next starts, through a few
long-lived sessions (a process per entry or per table costs more than most entries take):

1. builds: indexes and key, unique, check and exclusion constraints, a table's entries one
   after another, tables side by side;
2. attachments: every ``INDEX ATTACH``, one at a time in one session, in the archive's order
   (which is dependency order): no two attachments of a tree ever run at once, and every tree's
   indexes are complete before anything that needs them;
3. the rest (foreign keys, triggers, rules, policies, publications, comments ...) side by side
   in dependency order, never two entries that lock the same partition tree (or plain table) at
   once. A deadlock or lock timeout the server still reports rolls back only that entry, which
   runs again.

An entry that depends on one of a later phase moves to that phase. On ``--resume`` an entry whose
object the target already has is skipped (see :func:`rdsmigrate.schema.exists_on_target`).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from rdsmigrate import schema
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError

BUILDS, ATTACHMENTS, REST = 0, 1, 2
_BUILD_KINDS = {"INDEX", "CONSTRAINT", "CHECK CONSTRAINT"}
# Errors after which the entry, rolled back alone, may simply run again.
_TRANSIENT = (pg_errors.DeadlockDetected, pg_errors.LockNotAvailable,
              pg_errors.SerializationFailure)
_ATTEMPTS = 5


@dataclass
class _Job:
    entries: list[schema.Entry]
    locks: tuple[int, ...]
    deps: set[int]
    attempts: int = 0


def phases(entries: list[schema.Entry]) -> list[list[schema.Entry]]:
    """``entries`` (in archive order) by phase, each phase in archive order."""
    phase: dict[int, int] = {}
    for entry in entries:
        base = (BUILDS if entry.desc in _BUILD_KINDS
                else ATTACHMENTS if entry.desc == "INDEX ATTACH" else REST)
        phase[entry.dump_id] = max([base, *(phase[d] for d in entry.deps if d in phase)])
    return [[e for e in entries if phase[e.dump_id] == p] for p in (BUILDS, ATTACHMENTS, REST)]


def run(target: Endpoint, entries: list[schema.Entry], *, jobs: int, resume: bool,
        hint: str) -> int:
    """Run ``entries`` on the target; returns how many ran (on resume, not already there)."""
    ran = Counter[str]()
    for number, group in enumerate(phases(entries)):
        if not group:
            continue
        if number == BUILDS:
            by_table: dict[str, list[schema.Entry]] = {}
            for entry in group:
                by_table.setdefault(entry.table or f"#{entry.dump_id}", []).append(entry)
            work = [_Job(es, (), set()) for es in by_table.values()]
        else:
            work = [_Job([e], e.locks, set()) for e in group]
        ids = {e.dump_id for e in group}
        for job in work:
            own = {e.dump_id for e in job.entries}
            job.deps = {d for e in job.entries for d in e.deps if d in ids and d not in own}
        workers = 1 if number == ATTACHMENTS else max(1, jobs)
        _Phase(target, work, resume=resume, hint=hint, ran=ran).run(workers)
    return sum(ran.values())


@dataclass
class _Phase:
    target: Endpoint
    pending: list[_Job]
    resume: bool
    hint: str
    ran: Counter[str]
    done: set[int] = field(default_factory=set)
    held: Counter[int] = field(default_factory=Counter)
    running: int = 0
    errors: list[BaseException] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def run(self, workers: int) -> None:
        threads = [threading.Thread(target=self._work, name=f"rdsmigrate-postdata-{i}", daemon=True)
                   for i in range(min(workers, len(self.pending)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _next(self) -> _Job | None:
        """The first job whose dependencies are done and whose locks nobody holds; None when
        there is nothing left to take. Waits while jobs remain that cannot start yet."""
        with self.cond:
            while not self.errors and self.pending:
                for i, job in enumerate(self.pending):
                    if job.deps <= self.done and not any(self.held[k] for k in job.locks):
                        self.pending.pop(i)
                        self.held.update(job.locks)
                        self.running += 1
                        return job
                if self.running == 0:
                    # Only possible if the archive's dependencies form a cycle among these
                    # entries: run them in archive order rather than never.
                    job = self.pending.pop(0)
                    self.held.update(job.locks)
                    self.running += 1
                    return job
                self.cond.wait()
            return None

    def _work(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while (job := self._next()) is not None:
                try:
                    if conn is None:
                        conn = connect(self.target, autocommit=True)
                        schema.prepare_session(conn)
                    self._run_job(conn, job)
                except _TRANSIENT:
                    with self.cond:
                        job.attempts += 1
                        if job.attempts < _ATTEMPTS:
                            self.pending.insert(0, job)
                        else:
                            self.errors.append(self._failure(job.entries[0], "repeated deadlocks"))
                except psycopg.Error as exc:
                    with self.cond:
                        self.errors.append(self._failure(job.entries[0], str(exc).strip()))
                except BaseException as exc:  # raised by run() in the calling thread
                    with self.cond:
                        self.errors.append(exc)
                finally:
                    with self.cond:
                        self.held.subtract(job.locks)
                        self.running -= 1
                        self.cond.notify_all()
        finally:
            if conn is not None:
                conn.close()

    def _run_job(self, conn: psycopg.Connection[Any], job: _Job) -> None:
        while job.entries:
            entry = job.entries[0]
            if not (self.resume and schema.exists_on_target(conn, entry)):
                schema.run_entries(conn, [entry])
                with self.cond:
                    self.ran[entry.desc] += 1
            job.entries.pop(0)
            with self.cond:
                self.done.add(entry.dump_id)
                self.cond.notify_all()

    def _failure(self, entry: schema.Entry, detail: str) -> UserError:
        return UserError(f"post-data on target {self.target.describe()} failed at "
                         f"{entry.describe()}: {self.target.redact(detail)}. Fix the cause, "
                         f"then {self.hint}")


_INVALID = """
SELECT format('index %I.%I', n.nspname, c.relname)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT (i.indisvalid AND i.indisready) AND n.nspname <> 'information_schema'
   AND n.nspname NOT LIKE 'pg\\_%'
UNION ALL
SELECT format('constraint %I on %I.%I', con.conname, n.nspname,
              coalesce(c.relname, t.typname))
  FROM pg_constraint con
  LEFT JOIN pg_class c ON c.oid = con.conrelid
  LEFT JOIN pg_type t ON t.oid = con.contypid
  JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, t.typnamespace)
 WHERE NOT con.convalidated AND n.nspname <> 'information_schema'
   AND n.nspname NOT LIKE 'pg\\_%'
"""


def invalid_objects(conn: psycopg.Connection[Any]) -> set[str]:
    """Indexes not valid or not ready, and constraints not validated, outside system schemas."""
    return {r[0] for r in conn.execute(_INVALID).fetchall()}


def check_valid(source_conn: psycopg.Connection[Any], target_conn: psycopg.Connection[Any],
                target: Endpoint, hint: str) -> None:
    """Every index and constraint on the target is valid, except those invalid on the source
    too (``NOT VALID`` constraints are carried as such): a copy that leaves one invalid has
    failed, whatever its steps reported."""
    bad = sorted(invalid_objects(target_conn) - invalid_objects(source_conn))
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UserError(f"the copy left {', '.join(bad[:5])}{more} invalid on target "
                        f"{target.describe()}; {hint} to rebuild them")


_INVALID_INDEXES = """
SELECT n.nspname, c.relname, con.conname, tn.nspname, t.relname
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
 WHERE NOT (i.indisvalid AND i.indisready)
"""


def repair(conn: psycopg.Connection[Any], post: schema.PostData) -> None:
    """Before a resumed copy builds anything: drop what an interrupted run left that the pass
    would otherwise take as done.

    A key index built but never attached (see :class:`rdsmigrate.schema.KeyBuild`) would be a
    stray duplicate of the constraint. An invalid index (or the constraint owning it) that the
    archive creates is dropped so that it is built again: an invalid partitioned index stays
    invalid however often its partitions are attached. Only objects the archive defines are
    dropped, found by their identity.
    """
    for key in post.key_builds.values():
        conn.execute(key.drop.encode())
    defined = {e.address[1] for e in post.entries
               if e.address and e.address[0] in ("index", "table constraint")}
    drops: list[sql.Composed] = []
    for nsp, index, con, table_nsp, table in conn.execute(_INVALID_INDEXES).fetchall():
        if con is not None and (table_nsp, table, con) in defined:
            drops.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                sql.Identifier(table_nsp, table), sql.Identifier(con)))
        elif con is None and (nsp, index) in defined:
            drops.append(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(nsp, index)))
    # A partition's index attached to an invalid parent cannot be dropped on its own, but goes
    # with the parent's: retry until a round drops nothing more.
    while drops:
        failed: list[sql.Composed] = []
        for statement in drops:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except psycopg.Error:
                failed.append(statement)
        if len(failed) == len(drops):
            with conn.transaction():
                conn.execute(failed[0])  # raises the server's reason
        drops = failed
