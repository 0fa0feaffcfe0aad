"""``rdsmigrate copy``: schema and rows from one consistent snapshot of the source, in parallel.

Order of work, and why:
1. preflight, so nothing is written when something would block the copy;
2. a snapshot exported by a (temporary) logical replication slot: schema, rows, sequences and
   large objects all come from that one instant;
3. pre-data schema (no indexes, constraints or triggers yet), database-level settings;
4. rows: ``--jobs`` workers, largest units first, each finished table recorded durably;
5. sequences and large objects; 6. post-data (indexes, constraints, triggers) with
   ``pg_restore -j``; 7. materialized views populated.

Guarantees: the target holds exactly the source's state at the snapshot. Does not: keep the
target in sync afterwards (that is ``sync``), or copy roles' passwords.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
import time
from collections import defaultdict
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate import preflight, schema
from rdsmigrate.copy import objects, snapshot
from rdsmigrate.copy.plan import Unit, plan
from rdsmigrate.copy.report import CopyReport, TableCopy
from rdsmigrate.copy.state import CopyState
from rdsmigrate.copy.stream import Stopped, copy_unit
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.db.tools import client_tools, server_major
from rdsmigrate.errors import Interrupted, UserError
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions

__all__ = ["CopyReport", "run"]

DIFFERENT_SNAPSHOTS_NOTE = (
    "tables copied in different runs come from different snapshots of the source: the result is "
    "consistent only if the source was not written to between the runs"
)


def run(source: Endpoint, target: Endpoint, options: CopyOptions, reporter: Reporter) -> CopyReport:
    started = time.monotonic()
    phases: dict[str, float] = {}
    notes: list[str] = []
    check_options = options.model_copy(update={"replace": options.replace or options.resume})
    report = preflight.run(source, target, check_options)
    preflight.require_ready(report)
    state = CopyState.open(options.state_dir, source, target, resume=options.resume)
    run_number = 1 + sum(1 for e in state.events if e["event"] == "resume")
    if options.resume:
        run_number += 1
        state.record("resume")
        notes.append(DIFFERENT_SNAPSHOTS_NOTE)
        reporter.warn(DIFFERENT_SNAPSHOTS_NOTE)

    with connect(source, autocommit=True) as probe:
        source_major = server_major(probe.info.server_version)
    with connect(target, autocommit=True) as probe:
        target_major = server_major(probe.info.server_version)
    tools = client_tools(source_major)

    snap = snapshot.take(source, slot_name=options.keep_slot, temporary=options.keep_slot is None)
    if snap.fallback_reason and options.keep_slot:
        snap.close()
        raise UserError(f"replication cannot follow the copy: {snap.fallback_reason}; set "
                        "wal_level=logical (on RDS: rds.logical_replication=1) and grant REPLICATION")
    if snap.fallback_reason:
        notes.append(f"snapshot exported with pg_export_snapshot(): {snap.fallback_reason}; "
                     "an online sync cannot follow this copy")
    with snap, connect(target, autocommit=True) as tgt_admin, connect(source, autocommit=True) as src_snap:
        snapshot.import_into(src_snap, snap.snapshot_id)
        t0 = time.monotonic()
        settings_applied = 0
        roles_created: list[str] = []
        if not state.has("pre-data"):
            with reporter.phase("schema (pre-data)"):
                archive = schema.dump(tools, source, snap.snapshot_id, options.selection,
                                      state.path.parent)
                shutil.move(str(archive.path), state.archive_path)
                archive = schema.SchemaArchive(state.archive_path, tools)
                if options.roles:
                    roles_created = schema.copy_roles(tools, source, tgt_admin)
                if options.replace or options.resume:
                    schema.drop_existing(archive, tgt_admin)
                schema.restore_pre_data(archive, target, state.path.parent, roles=options.roles)
                settings_applied = schema.copy_database_settings(src_snap, tgt_admin, target.dbname)
            state.record("pre-data", roles=roles_created, settings=settings_applied)
        else:
            archive = schema.SchemaArchive(state.archive_path, tools)
            pre = next(e for e in state.events if e["event"] == "pre-data")
            roles_created, settings_applied = pre.get("roles", []), pre.get("settings", 0)
        phases["schema"] = time.monotonic() - t0

        tables = catalog.list_tables(src_snap, options.selection.schemas,
                                     options.selection.exclude_tables)
        finished = state.finished_tables()
        todo = [t for t in tables if t.qualified not in finished]
        if options.resume and todo and not state.has("post-data-started"):
            with tgt_admin.transaction():
                for t in todo:
                    tgt_admin.execute(sql.SQL("TRUNCATE ONLY {}").format(t.ident))
            reporter.info(f"resume: {len(finished)} tables kept, {len(todo)} truncated and recopied")

        t0 = time.monotonic()
        # Binary COPY formats are only guaranteed identical between servers of the same major.
        binary = source_major == target_major
        text_only = _text_only_tables(src_snap) if binary else set()
        units = plan(src_snap, todo, jobs=options.jobs, split_bytes=options.split_bytes,
                     source_major=source_major)
        _copy_units(source, target, snap.snapshot_id, units, options.jobs, binary, text_only,
                    state, reporter, run_number)
        phases["data"] = time.monotonic() - t0

        t0 = time.monotonic()
        if not state.has("sequences"):
            n_seq = objects.copy_sequences(src_snap, tgt_admin, options.selection.schemas)
            state.record("sequences", count=n_seq)
        n_seq = next(e["count"] for e in state.events if e["event"] == "sequences")
        if not state.has("large-objects"):
            n_lo, _ = objects.copy_large_objects(src_snap, tgt_admin, reporter)
            state.record("large-objects", count=n_lo)
        n_lo = next(e["count"] for e in state.events if e["event"] == "large-objects")
        phases["sequences+large objects"] = time.monotonic() - t0

        t0 = time.monotonic()
        if not state.has("post-data"):
            resuming_post = state.has("post-data-started")
            state.record("post-data-started")
            with reporter.phase(f"schema (post-data: indexes, constraints, triggers; {options.jobs} jobs)"):
                schema.restore_post_data(archive, target, state.path.parent, jobs=options.jobs,
                                         roles=options.roles, resuming=resuming_post)
            state.record("post-data")
        phases["indexes+constraints"] = time.monotonic() - t0

        t0 = time.monotonic()
        n_mv = schema.refresh_materialized_views(src_snap, tgt_admin, options.selection.schemas)
        phases["materialized views"] = time.monotonic() - t0
        src_snap.execute("COMMIT")

    all_tables = [TableCopy(**{k: v for k, v in e.items() if k in TableCopy.model_fields})
                  for e in state.finished_tables().values()]
    if not options.roles:
        notes.append("objects are owned by the target user and source grants were not copied "
                     "(use --roles to create the source's roles, without passwords, and keep them)")
    elapsed = time.monotonic() - started
    result = CopyReport(
        source=source.describe(), target=target.describe(),
        snapshot=(f"logical replication slot {snap.slot_name} at {snap.consistent_lsn}"
                  if snap.slot_name else "pg_export_snapshot()"),
        slot_name=snap.slot_name if options.keep_slot else None,
        consistent_lsn=snap.consistent_lsn,
        jobs=options.jobs, tables=all_tables, sequences=n_seq, large_objects=n_lo,
        materialized_views=n_mv, database_settings=settings_applied, roles_created=roles_created,
        phases={k: round(v, 3) for k, v in phases.items()},
        rows=sum(t.rows for t in all_tables), bytes=sum(t.bytes for t in all_tables),
        seconds=round(elapsed, 3), resumed=options.resume, notes=notes,
        report_path=options.report_path or state.path.with_name("copy-report.json"),
    )
    assert result.report_path is not None
    result.report_path.parent.mkdir(parents=True, exist_ok=True)
    result.report_path.write_text(result.model_dump_json(indent=2))
    state.record("finished")
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


class _Workers:
    """``jobs`` threads sharing a queue of units; each holds one source and one target session.

    psycopg releases the GIL while libpq waits, so threads overlap the network and both servers'
    work; cancellation goes through each session's cancel request so Ctrl-C stops the servers'
    work too, not only ours.
    """

    def __init__(self, source: Endpoint, target: Endpoint, snapshot_id: str, binary: bool,
                 text_only: set[int], state: CopyState, reporter: Reporter, run_number: int,
                 units: list[Unit]) -> None:
        self.source, self.target, self.snapshot_id = source, target, snapshot_id
        self.binary, self.text_only = binary, text_only
        self.state, self.reporter, self.run_number = state, reporter, run_number
        self.queue: queue.Queue[Unit] = queue.Queue()
        for unit in units:
            self.queue.put(unit)
        self.pending: dict[str, int] = defaultdict(int)
        for unit in units:
            self.pending[unit.table.qualified] += 1
        self.totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.conns: list[psycopg.Connection[Any]] = []
        self.copied: list[str] = []

    def work(self) -> None:
        try:
            src = connect(self.source, autocommit=True)
            tgt = connect(self.target)
            with self.lock:
                self.conns += [src, tgt]
            with src, tgt:
                snapshot.import_into(src, self.snapshot_id)
                # Names in text output (regclass, regproc ...) come out fully qualified and are
                # read back exactly, whatever search_path either database sets.
                src.execute("SET LOCAL search_path = ''")
                tgt.execute("SET search_path = ''")
                tgt.commit()
                while not self.stop.is_set():
                    try:
                        unit = self.queue.get_nowait()
                    except queue.Empty:
                        return
                    self._one(src, tgt, unit)
        except Stopped:
            return
        except BaseException as exc:  # reported by the main thread, which stops the others
            if not self.stop.is_set():
                self.errors.append(exc)
            self.stop.set()

    def _one(self, src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], unit: Unit) -> None:
        task = self.reporter.task(unit.name, unit.est_bytes)
        t0 = time.monotonic()
        binary = self.binary and unit.table.oid not in self.text_only
        try:
            rows = copy_unit(src, tgt, unit, binary, task, self.stop)
            tgt.commit()
        finally:
            task.done()
        name = unit.table.qualified
        with self.lock:
            total = self.totals[name]
            total[0] += rows
            total[1] += task.bytes
            total[2] += time.monotonic() - t0
            self.pending[name] -= 1
            table_done = self.pending[name] == 0
        if table_done:
            method = ("binary" if binary else "text") + (
                f", {unit.of} ranges by {unit.label.split()[0]}" if unit.of > 1 else "")
            self.state.record("table", table=name, rows=int(total[0]), bytes=int(total[1]),
                              seconds=round(total[2], 3), method=method, run=self.run_number)
            self.copied.append(name)

    def cancel(self) -> None:
        self.stop.set()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=5)


def _copy_units(source: Endpoint, target: Endpoint, snapshot_id: str, units: list[Unit], jobs: int,
                binary: bool, text_only: set[int], state: CopyState, reporter: Reporter,
                run_number: int) -> list[str]:
    if not units:
        return []
    workers = _Workers(source, target, snapshot_id, binary, text_only, state, reporter, run_number,
                       units)
    threads = [threading.Thread(target=workers.work, name=f"copy-{i}", daemon=True)
               for i in range(min(jobs, len(units)))]
    total_bytes = sum(u.est_bytes for u in units)
    with reporter.transfer(f"data ({len(units)} units, {len(threads)} jobs)", total_bytes):
        try:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
                if workers.errors:
                    workers.cancel()
        except KeyboardInterrupt:
            workers.cancel()
            for thread in threads:
                thread.join(timeout=10)
            done = len(state.finished_tables())
            raise Interrupted(
                f"copy interrupted: {done} tables are complete and recorded in {state.path}; "
                "the others hold partial rows and no indexes or constraints exist yet. Run the "
                "same command with --resume to finish, or drop the target database to discard it"
            ) from None
    if workers.errors:
        exc = workers.errors[0]
        if isinstance(exc, UserError):
            raise exc
        if isinstance(exc, psycopg.Error):
            raise UserError(
                f"copying rows failed: {target.redact(str(exc).strip().splitlines()[0])}. "
                f"{len(state.finished_tables())} tables are complete; fix the cause and rerun "
                "with --resume"
            ) from exc
        raise exc
    return workers.copied
