"""The copy's orchestration: schema and rows from one consistent snapshot of the source.

Order of work, and why:
1. preflight, so nothing is written when something would block the copy;
2. a snapshot exported by a (temporary) logical replication slot: schema, rows, sequences and
   large objects all come from that one instant;
3. pre-data schema (no indexes, constraints or triggers yet), database-level settings;
4. rows: ``--jobs`` workers, largest units first, each finished table recorded durably;
5. sequences and large objects; 6. post-data (indexes, constraints, triggers): each table's
   own while other tables load, the rest in a final pass that cannot race or deadlock
   (:mod:`.postdata`); 7. materialized views populated; 8. every index and constraint on the
   target checked valid.

Guarantees: the target holds exactly the source's state at the snapshot. Does not: keep the
target in sync afterwards (that is ``sync``), or copy roles' passwords.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate import memory, preflight, schema
from rdsmigrate.copy import objects, postdata, predata, replace, roles, snapshot
from rdsmigrate.copy.indexes import IndexBuilder
from rdsmigrate.copy.plan import Unit, plan
from rdsmigrate.copy.report import CopyReport, TableCopy
from rdsmigrate.copy.state import CopyState
from rdsmigrate.copy.workers import Pool, totals_by_table
from rdsmigrate.db import catalog, selection
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.db.tools import ClientTools, client_tools, server_major
from rdsmigrate.errors import Interrupted, UserError
from rdsmigrate.progress import Reporter, Task
from rdsmigrate.settings import CopyOptions
from rdsmigrate.testhook import pause

STAGED_START_UNITS = 5000
"""From this many units on, the workers' server starts only once pg_dump is done (see
:meth:`_CopyJob.read_post_data`); below, before pg_dump, so that its start costs no time."""

PIECEWISE_PRE_DATA_NOTE = (
    "the pre-data schema was restored in several transactions: the target's lock table "
    "(max_locks_per_transaction x (max_connections + max_prepared_transactions)) cannot hold one "
    "for every relation; had it failed, the part restored would have stayed (raise "
    "max_locks_per_transaction on the target for an all-or-nothing restore)"
)
DIFFERENT_SNAPSHOTS_NOTE = (
    "tables copied in different runs come from different snapshots of the source: the result is "
    "consistent only if the source was not written to between the runs"
)


def run(source: Endpoint, target: Endpoint, options: CopyOptions, reporter: Reporter) -> CopyReport:
    started = time.monotonic()
    check_options = options.model_copy(update={"replace": options.replace or options.resume})
    report = preflight.run(source, target, check_options)
    preflight.require_ready(report)
    preflight_seconds = time.monotonic() - started
    state = CopyState.open(options.state_dir, source, target, resume=options.resume)
    try:
        return _run(source, target, options, reporter, state, started, preflight_seconds)
    finally:
        state.close()


def _run(source: Endpoint, target: Endpoint, options: CopyOptions, reporter: Reporter,
         state: CopyState, started: float, preflight_seconds: float) -> CopyReport:
    job = _CopyJob(source, target, options, reporter, state)
    job.phases["preflight"] = preflight_seconds
    with job.timed("snapshot+plan"):
        with connect(source, autocommit=True) as probe:
            job.source_major = server_major(probe.info.server_version)
        with connect(target, autocommit=True) as probe:
            job.target_major = server_major(probe.info.server_version)
        tools = client_tools(job.source_major)
        snap = job.take_snapshot()
    with snap, connect(target, autocommit=True) as tgt_admin, \
            connect(source, autocommit=True) as src_snap:
        with job.timed("snapshot+plan"):
            catalog.without_jit(src_snap)
            snapshot.import_into(src_snap, snap.snapshot_id)
            units, binary_ok = job.plan_rows(src_snap)
            pool = job.pool(snap.snapshot_id, units, binary_ok)
            if len(units) < STAGED_START_UNITS:
                pool.prepare()  # its 0.2 s hidden behind pg_dump: memory is no concern here
        try:
            archive = job.schema_before_rows(tools, snap.snapshot_id, src_snap, tgt_admin, pool)
            memory.release()  # the pre-data's entries
            pool.start()
            post = job.post
            if options.resume:
                postdata.repair(tgt_admin, post)
            job.indexes = IndexBuilder(archive, target, post, state, options.jobs, job.hint)
            job.truncate_unfinished(tgt_admin, units)
            job.rows(pool, units)
        except BaseException:
            pool.close()
            if job.indexes is not None:
                job.indexes.abandon()
            raise
        pool.close()
        if job.indexes is not None:
            job.indexes.rows_done()
            with job.timed("indexes+constraints"):
                job.indexes.finish()
        job.sequences_and_large_objects(src_snap, tgt_admin)
        job.schema_after_rows(archive, post)
        with job.timed("materialized views"):
            job.matviews = schema.refresh_materialized_views(src_snap, tgt_admin,
                                                             job.resolved.covers)
        postdata.check_valid(src_snap, tgt_admin, target, job.hint)
        src_snap.execute("COMMIT")
    return job.report(snap, time.monotonic() - started)


class _CopyJob:
    """The steps of one copy, sharing its endpoints, options, progress and durable state."""

    def __init__(self, source: Endpoint, target: Endpoint, options: CopyOptions,
                 reporter: Reporter, state: CopyState) -> None:
        self.source, self.target, self.options = source, target, options
        self.reporter, self.state = reporter, state
        self.phases: dict[str, float] = {}
        self.notes: list[str] = []
        self.source_major = self.target_major = 0
        self.run_number = 1 + sum(1 for e in state.events if e["event"] == "resume")
        self.roles_created: list[str] = []
        self.roles_copied = roles.RolesCopied()
        self.settings_applied = self.sequences = self.large_objects = self.matviews = 0
        self.indexes: IndexBuilder | None = None
        self.post = schema.PostData([], {})
        self.resolved = selection.EVERYTHING
        # sync has no --resume: a rerun copies again, replacing what this run wrote.
        self.hint = ("rerun the same `rdsmigrate sync` (it copies again)" if options.keep_slot
                     else "rerun the same command with --resume")
        if options.resume:
            self.run_number += 1
            state.record("resume")
            self.notes.append(DIFFERENT_SNAPSHOTS_NOTE)
            reporter.warn(DIFFERENT_SNAPSHOTS_NOTE)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - t0

    def take_snapshot(self) -> snapshot.SourceSnapshot:
        keep = self.options.keep_slot
        snap = snapshot.take(self.source, slot_name=keep, temporary=keep is None)
        if snap.fallback_reason and keep:
            snap.close()
            raise UserError(f"replication cannot follow the copy: {snap.fallback_reason}; set "
                            "wal_level=logical (on RDS: rds.logical_replication=1) and grant "
                            "REPLICATION")
        if snap.fallback_reason:
            self.notes.append(f"snapshot exported with pg_export_snapshot(): "
                              f"{snap.fallback_reason}; no online sync can follow this copy")
        return snap

    def plan_rows(self, src_snap: psycopg.Connection[Any]) -> tuple[list[Unit], list[bool]]:
        """Units for the tables not yet finished, largest first, and which may use binary."""
        self.resolved = selection.resolve(src_snap, self.options.selection)
        tables = list(self.resolved.tables)
        finished = self.state.finished_tables()
        todo = [t for t in tables if t.qualified not in finished]
        units = plan(src_snap, todo, jobs=self.options.jobs, split_bytes=self.options.split_bytes,
                     source_major=self.source_major)
        # Binary COPY formats are only guaranteed identical between servers of the same major.
        binary = self.source_major == self.target_major
        text_only = _text_only_tables(src_snap) if binary else set()
        return units, [binary and u.table.oid not in text_only for u in units]

    def pool(self, snapshot_id: str, units: list[Unit], binary_ok: list[bool]) -> Pool:
        totals = totals_by_table(units)
        tasks: dict[int, Task] = {}

        def on_progress(index: int, rows: int, nbytes: int) -> None:
            task = tasks.get(index)
            if task is None:
                task = tasks[index] = self.reporter.task(units[index].name, units[index].est_bytes)
            task.advance(rows, nbytes)

        def on_unit_done(index: int, rows: int, nbytes: int, seconds: float) -> None:
            unit = units[index]
            task = tasks.pop(index, None) or self.reporter.task(unit.name, unit.est_bytes)
            task.rows = rows
            task.done()
            total = totals[unit.table.qualified]
            total.rows += rows
            total.bytes += nbytes
            total.seconds += seconds
            total.pending -= 1
            if total.pending == 0:
                pause("copy:data")
                method = ("binary" if binary_ok[index] else "text") + (
                    f", {unit.of} ranges by {unit.label.split()[0]}" if unit.of > 1 else "")
                self.state.record("table", table=unit.table.qualified, rows=total.rows,
                                  bytes=total.bytes, seconds=round(total.seconds, 3),
                                  method=method, run=self.run_number)
                if self.indexes is not None:
                    self.indexes.table_loaded(unit.table.qualified, unit.table.bytes)

        return Pool(self.source, self.target, snapshot_id, units, binary_ok, self.options.jobs,
                    on_progress, on_unit_done)

    def read_post_data(self, archive: schema.SchemaArchive,
                       src_snap: psycopg.Connection[Any]) -> None:
        """The post-data entries, read once pg_dump is done.

        Memory at 10,000 tables: pg_dump alone takes 82 MiB, reading 30,000 post-data entries
        briefly 40 MiB more, the pre-data's 10,000 entries 20 MiB, the workers' process server
        25 MiB and the workers 20 more. So one after the other, each step's garbage handed back
        to the system (:func:`rdsmigrate.memory.release`) before the next: the server starts
        while the pre-data's sessions run, the workers (forked from it in milliseconds) once the
        pre-data is in.
        """
        self.post = schema.split_post_data(archive, src_snap, roles=self.options.roles,
                                           addresses=self.options.resume)
        memory.release()

    def schema_before_rows(self, tools: ClientTools, snapshot_id: str,
                           src_snap: psycopg.Connection[Any], tgt_admin: psycopg.Connection[Any],
                           pool: Pool) -> schema.SchemaArchive:
        """Pre-data schema and database settings, unless a resumed run already did them; the
        post-data entries (:meth:`read_post_data`); the workers' server started on the way."""
        if self.state.has("pre-data"):
            archive = schema.SchemaArchive(self.state.archive_path, tools)
            self.read_post_data(archive, src_snap)
            pool.prepare()
            pre = next(e for e in self.state.events if e["event"] == "pre-data")
            self.roles_created, self.settings_applied = pre.get("roles", []), pre.get("settings", 0)
            return archive
        workdir = self.state.path.parent
        with self.timed("schema"), self.reporter.phase("schema (pre-data)"):
            archive = schema.dump(tools, self.source, snapshot_id, self.resolved,
                                  self.state.archive_path)
            self.read_post_data(archive, src_snap)
            pause("copy:pre-data")
            if self.options.roles:
                # All or none: copy_roles runs in one transaction.
                self.roles_copied = roles.copy_roles(src_snap, tgt_admin, self.resolved)
                copied = self.roles_copied
                self.roles_created = copied.created
                if copied.set_role_granted:
                    self.notes.append("target user made a member (SET ROLE) of the objects' "
                                      "owner roles " + ", ".join(copied.set_role_granted))
                if copied.not_carried:
                    self.notes.append("--roles did not carry: " + "; ".join(copied.not_carried))
            if self.options.replace or self.options.resume:
                replace.drop_recreated(archive, src_snap, tgt_admin, roles=self.options.roles)
            try:
                # Settings first, in a transaction committed only once the restore has committed
                # its own: a failure of either leaves neither (exit 2 means nothing written).
                # The restore's sessions do not see the uncommitted settings, as they must not
                # (default_transaction_read_only, search_path).
                with tgt_admin.transaction():
                    self.settings_applied = schema.copy_database_settings(
                        src_snap, tgt_admin, self.target.dbname)
                    if not predata.restore(archive, self.target, workdir,
                                           roles=self.options.roles, target_conn=tgt_admin,
                                           jobs=self.options.jobs, ready=pool.prepare):
                        self.notes.append(PIECEWISE_PRE_DATA_NOTE)
            except BaseException:
                self._undo_roles(tgt_admin)
                raise
        self.state.record("pre-data", roles=self.roles_created, settings=self.settings_applied)
        return archive

    def _undo_roles(self, tgt_admin: psycopg.Connection[Any]) -> None:
        left = roles.undo(tgt_admin, self.roles_copied)
        if left:
            self.reporter.warn(f"roles created by this run remain on the target: {', '.join(left)}"
                               " (DROP ROLE them, or keep them for the next run)")
        self.roles_created = []

    def truncate_unfinished(self, tgt_admin: psycopg.Connection[Any], units: list[Unit]) -> None:
        """A resumed run empties the tables an earlier run left half-copied."""
        if not self.options.resume or not units or self.state.has("post-data-started"):
            return
        tables = {u.table.qualified: u.table for u in units}
        with tgt_admin.transaction():
            for table in tables.values():
                tgt_admin.execute(sql.SQL("TRUNCATE ONLY {}").format(table.ident))
        self.reporter.info(f"resume: {len(self.state.finished_tables())} tables kept, "
                           f"{len(tables)} truncated and recopied")

    def rows(self, pool: Pool, units: list[Unit]) -> None:
        total_bytes = sum(u.est_bytes for u in units)
        label = f"data ({len(units)} units, {min(self.options.jobs, len(units))} jobs)"
        with self.timed("data"), self.reporter.transfer(label, total_bytes):
            try:
                pool.go()
            except KeyboardInterrupt:
                done = len(self.state.finished_tables())
                raise Interrupted(
                    f"copy interrupted: {done} tables are complete and recorded in "
                    f"{self.state.path}; the others hold partial rows and no indexes or "
                    "constraints exist yet. Run the same command with --resume to finish, or "
                    "drop the target database to discard it"
                ) from None
        if pool.errors:
            index, kind, message = pool.errors[0]
            where = f" in {units[index].name}" if index >= 0 else ""
            text = (f"copying rows failed{where}: {self.target.redact(message)}. "
                    f"{len(self.state.finished_tables())} tables are complete; fix the cause, then "
                    f"{self.hint}")
            if kind == "user":
                raise UserError(text)
            raise RuntimeError(text)

    def sequences_and_large_objects(self, src_snap: psycopg.Connection[Any],
                                    tgt_admin: psycopg.Connection[Any]) -> None:
        with self.timed("sequences+large objects"):
            if not self.state.has("sequences"):
                count = objects.copy_sequences(src_snap, tgt_admin, self.resolved)
                self.state.record("sequences", count=count)
            if not self.state.has("large-objects"):
                count, _ = objects.copy_large_objects(src_snap, tgt_admin, self.reporter,
                                                      roles=self.options.roles)
                self.state.record("large-objects", count=count)
        events = {e["event"]: e for e in self.state.events}
        self.sequences = events["sequences"]["count"]
        self.large_objects = events["large-objects"]["count"]

    def schema_after_rows(self, archive: schema.SchemaArchive, post: schema.PostData) -> None:
        """Whatever post-data the data phase did not build: foreign keys, triggers, the indexes
        of tables finished in an earlier run, partitioned parents' indexes and attachments."""
        if self.state.has("post-data"):
            return
        assert self.indexes is not None
        if self.indexes.errors:
            raise self.indexes.errors[0]
        # Tables built in an earlier run are not skipped: on resume every entry whose object
        # the target has already is (postdata.run), so nothing is left out.
        skip = {e.dump_id for table, entries in post.per_table.items()
                if table in self.indexes.built for e in entries}
        entries = [e for e in post.entries if e.dump_id not in skip]
        resume = self.options.resume
        self.state.record("post-data-started")
        pause("copy:post-data")
        jobs = self.options.jobs
        with self.timed("indexes+constraints"), self.reporter.phase(
                f"schema (post-data: {len(entries)} indexes, constraints, triggers...; {jobs} jobs)"):
            postdata.run(self.target, entries, jobs=jobs, resume=resume, hint=self.hint)
            with connect(self.target, autocommit=True) as conn:
                schema.flush_commits(conn)
        self.state.record("post-data")

    def report(self, snap: snapshot.SourceSnapshot, elapsed: float) -> CopyReport:
        tables = [TableCopy(**{k: v for k, v in e.items() if k in TableCopy.model_fields})
                  for e in self.state.finished_tables().values()]
        if not self.options.roles:
            self.notes.append("objects are owned by the target user and source grants were not "
                              "copied (use --roles to create the source's roles, without "
                              "passwords, and keep them)")
        result = CopyReport(
            source=self.source.describe(), target=self.target.describe(),
            snapshot=(f"logical replication slot {snap.slot_name} at {snap.consistent_lsn}"
                      if snap.slot_name else "pg_export_snapshot()"),
            slot_name=snap.slot_name if self.options.keep_slot else None,
            consistent_lsn=snap.consistent_lsn,
            jobs=self.options.jobs, tables=tables, sequences=self.sequences,
            large_objects=self.large_objects, materialized_views=self.matviews,
            database_settings=self.settings_applied, roles_created=self.roles_created,
            excluded=self.resolved.excluded_names,
            phases={k: round(v, 3) for k, v in self.phases.items()},
            rows=sum(t.rows for t in tables), bytes=sum(t.bytes for t in tables),
            seconds=round(elapsed, 3), resumed=self.options.resume, notes=self.notes,
            report_path=self.options.report_path or self.state.path.with_name("copy-report.json"),
        )
        assert result.report_path is not None
        result.report_path.parent.mkdir(parents=True, exist_ok=True)
        result.report_path.write_text(result.model_dump_json(indent=2))
        self.state.record("finished")
        return result


def _text_only_tables(conn: psycopg.Connection[Any]) -> set[int]:
    """Tables that must travel in text COPY format even between servers of the same major.

    OID-alias columns (regclass, regproc, regtype ...) hold OIDs, which name different objects on
    the target: only their text form (a name) survives the move, as pg_dump knows. Types without
    binary send/receive functions (some extensions') cannot use binary at all. Domains and arrays
    are looked through to the type they are built on.
    """
    rows = conn.execute(
        """WITH RECURSIVE base(attrelid, typid) AS (
               SELECT a.attrelid, a.atttypid FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid
               WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
             UNION
               SELECT b.attrelid, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
                 FROM base b JOIN pg_type t ON t.oid = b.typid
                WHERE t.typtype = 'd' OR (t.typelem <> 0 AND t.typcategory = 'A'))
           SELECT DISTINCT b.attrelid::int8 FROM base b JOIN pg_type t ON t.oid = b.typid
            WHERE t.typsend = 0 OR t.typreceive = 0
               OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname LIKE 'reg%')"""
    ).fetchall()
    return {int(r[0]) for r in rows}
