"""``rdsmigrate cutover``: switch the application's writes from the source to the target.

1. refuse while the target is further behind than ``--max-lag`` or the source's schema changed
   since the copy (DDL is not replicated), or replication is not streaming;
2. freeze the source's writes for every role (:mod:`.freeze`);
3. wait until the slot's ``confirmed_flush_lsn`` reaches the source's WAL insert position taken
   after the freeze: the target has then applied, and flushed to its own disk, every write the source
   committed;
4. set every sequence on the target from the source (logical replication carries rows, never
   sequence positions), owned by a column or not;
5. copy the large objects again (logical replication does not carry them either);
6. verify as asked: exact ``count(*)`` of every table on both sides (default), ``verify``'s
   checksums (``full``), or nothing;
7. drop the subscription: the target is now on its own and writable. The write downtime is
   measured from the freeze to here. Then the slot and the publication are dropped on the source.

The source stays frozen afterwards, so a forgotten application instance cannot write to the old
database; unfreezing it is one command, which the report names. If any step before 7 fails, the
source is unfrozen and replication keeps running: the target is still a live replica, and the
cutover can be tried again.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from rdsmigrate.copy.objects import copy_large_objects, copy_sequences
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect, redact_secrets
from rdsmigrate.db.selection import resolve
from rdsmigrate.errors import EXIT_INTERNAL, EXIT_USER, RdsMigrateError, UserError
from rdsmigrate.online import freeze, replication, state
from rdsmigrate.online.settings import CutoverOptions
from rdsmigrate.online.status import OnlineStatus, locate, measure
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import Selection, VerifyOptions

POLL_S = 0.02


class CutoverFailed(RdsMigrateError):
    """A step after the freeze failed; the source was unfrozen and replication left running."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class CutoverReport(BaseModel):
    source: str
    target: str
    name: str
    lag_bytes_before: int
    final_lsn: str
    """The source's WAL position after the freeze: everything up to it is on the target."""
    write_downtime_s: float
    """From the freeze of the source to the target being ready for writes."""
    steps: dict[str, float]
    sessions_ended: int
    sequences: int
    large_objects: int
    verify: str
    tables_checked: int
    rows_checked: int | None
    source_frozen: bool
    unfreeze_command: str
    notes: list[str]

    def render(self, reporter: Reporter) -> None:
        def line(text: str) -> None:
            reporter.console.print(text, markup=False, highlight=False)

        steps = ", ".join(f"{k} {v:.2f} s" for k, v in self.steps.items())
        checked = (f"{self.tables_checked} tables, {self.rows_checked:,} rows counted on both sides"
                   if self.rows_checked is not None else
                   f"{self.tables_checked} tables verified ({self.verify})")
        line(f"cut over to {self.target}: write downtime {self.write_downtime_s:.2f} s ({steps})")
        line(f"target caught up to {self.final_lsn} (lag before the freeze "
             f"{human_bytes(self.lag_bytes_before)}); {self.sequences} sequences set; "
             f"{self.large_objects} large objects copied again; {checked}; "
             f"{self.sessions_ended} source sessions ended")
        line(f"replication objects {self.name} removed; the target is writable")
        line(f"the source {self.source} stays frozen (new sessions read-only) so nothing writes "
             f"to it by mistake; to unfreeze it: {self.unfreeze_command}")
        for n in self.notes:
            line(f"note: {n}")


def run(source: Endpoint, target: Endpoint, options: CutoverOptions,
        reporter: Reporter) -> CutoverReport:
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        freeze.writable(src)
        record, recorded = locate(src, tgt, options.state_dir, target)
        path = state.location(options.state_dir, target)
        before = measure(src, tgt, record, recorded=recorded, retained_warn_bytes=1 << 62,
                         lag_probe_s=0)
        _refuse_unless_ready(before, options)
        assert before.lag_bytes is not None
        record.phase = "cutting-over"
        record.frozen = True
        record.save(path)  # first, so that a crash while frozen leaves `abort` a trace
        steps: dict[str, float] = {}
        t_freeze = time.monotonic()
        try:
            result = _switch(source, target, src, tgt, record, options, reporter, steps)
        except BaseException as exc:
            _undo_freeze(src, record, path, reporter)
            _keep_replicating(tgt, record.name, reporter)
            if isinstance(exc, KeyboardInterrupt):
                reporter.warn(f"cutover interrupted: the source was unfrozen and replication "
                              f"{record.name} keeps running")
                raise
            code = exc.exit_code if isinstance(exc, RdsMigrateError) else (
                EXIT_USER if isinstance(exc, psycopg.OperationalError) else EXIT_INTERNAL)
            raise CutoverFailed(
                f"cutover failed: {redact_secrets(str(exc))}. The source was unfrozen (it takes "
                f"writes again) and replication {record.name} is still running; fix the cause "
                "and run cutover again, or `rdsmigrate abort`", code) from None
        downtime = time.monotonic() - t_freeze
        reporter.info(f"target ready: write downtime {downtime:.2f} s")
        notes: list[str] = []
        t0 = time.monotonic()
        try:
            replication.drop_slot(src, record.name)
            replication.drop_publication(src, record.name)
        except (psycopg.Error, UserError) as exc:
            notes.append(f"dropping the slot or publication {record.name} on the source failed "
                         f"({redact_secrets(str(exc))}): run `rdsmigrate abort` to remove them")
        steps["source cleanup (after downtime)"] = round(time.monotonic() - t0, 3)
        report = CutoverReport(
            source=source.describe(), target=target.describe(), name=record.name,
            lag_bytes_before=before.lag_bytes, write_downtime_s=round(downtime, 3),
            steps=steps, source_frozen=True,
            unfreeze_command=freeze.unfreeze_command(record.source_dbname), notes=notes, **result,
        )
        record.phase = "cut-over"
        record.cutover = report.model_dump(mode="json")
        record.save(path)
        return report


def _refuse_unless_ready(status: OnlineStatus, options: CutoverOptions) -> None:
    if status.drift:
        raise UserError(
            "the source's schema changed since the copy, and logical replication does not carry "
            "DDL: " + "; ".join(status.drift) + ". Undo the change on the source, or run "
            "`rdsmigrate abort` and `rdsmigrate sync --replace` to start from the new schema")
    if not status.streaming:
        raise UserError(
            f"replication {status.name} is not streaming (subscription "
            f"{'present' if status.subscription else 'missing'}, apply worker "
            f"{'running' if status.worker_running else 'stopped'}, slot "
            f"{'active' if status.slot_active else 'inactive'}): see `rdsmigrate status`")
    if status.frozen:
        raise UserError("the source database is already frozen (default_transaction_read_only): "
                        "`rdsmigrate abort` or ALTER DATABASE .. RESET default_transaction_read_only")
    if status.lag_bytes is None or status.lag_bytes > options.max_lag_bytes:
        raise UserError(
            f"the target is {human_bytes(status.lag_bytes or 0)} behind the source, above "
            f"--max-lag {human_bytes(options.max_lag_bytes)}: wait for it to catch up "
            "(`rdsmigrate status --watch`) so the write downtime stays short")


def _switch(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
            tgt: psycopg.Connection[Any], record: state.OnlineState, options: CutoverOptions,
            reporter: Reporter, steps: dict[str, float]) -> dict[str, Any]:
    """Steps 2 to 7; any exception leaves the caller to unfreeze."""
    t0 = time.monotonic()

    def step(name: str) -> None:
        nonlocal t0
        now = time.monotonic()
        steps[name] = round(now - t0, 3)
        t0 = now

    frozen = freeze.freeze(src, record.source_dbname)
    # The insert position, not pg_current_wal_lsn() (the write position): a commit made with
    # synchronous_commit = off may still sit in the WAL buffers, behind the write position.
    row = src.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    final_lsn = str(row[0])
    step("freeze")
    _wait_applied(src, record.name, final_lsn, options.timeout_s)
    step("catch-up")
    # nextval is refused in read-only transactions: the frozen source's sequences are final.
    n_seq = copy_sequences(src, tgt, resolve(src, _selection(record), strict=False))
    step("sequences")
    n_lo, _ = copy_large_objects(src, tgt, reporter, roles=record.roles)
    _drop_extra_large_objects(src, tgt)
    step("large objects")
    tables_checked, rows_checked = _verify(source, target, src, record, options, reporter)
    step(f"verify ({options.verify})")
    replication.drop_subscription(tgt, record.name)
    step("subscription dropped")
    return {"final_lsn": final_lsn, "sessions_ended": frozen.terminated,
            "sequences": n_seq, "large_objects": n_lo, "verify": options.verify,
            "tables_checked": tables_checked, "rows_checked": rows_checked}


def _wait_applied(src: psycopg.Connection[Any], name: str, lsn: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        row = src.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = %s", [lsn, name]).fetchone()
        if row is None:
            raise UserError(f"the replication slot {name} disappeared from the source")
        if row[0]:
            return
        if time.monotonic() > deadline:
            raise UserError(
                f"the target did not apply the source's last changes within {timeout_s:g} s "
                f"(applied up to {row[1]}, the source is at {lsn}): check the subscription's "
                "apply worker (`rdsmigrate status`, the target server's log), or raise --timeout")
        time.sleep(POLL_S)


def _drop_extra_large_objects(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any]) -> None:
    """Large objects unlinked on the source since the copy are unlinked on the target too."""
    keep = [r[0] for r in src.execute("SELECT oid FROM pg_largeobject_metadata").fetchall()]
    tgt.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid <> ALL(%s::oid[])",
                [keep])


def _verify(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
            record: state.OnlineState, options: CutoverOptions,
            reporter: Reporter) -> tuple[int, int | None]:
    """(tables checked, rows counted or None); raises UserError on any difference."""
    if options.verify == "none":
        return 0, None
    if options.verify == "full":
        from rdsmigrate import verify

        result = verify.run(source, target,
                            VerifyOptions(jobs=options.jobs, selection=_selection(record),
                                          roles=record.roles),
                            reporter)
        if not result.identical:
            raise UserError("verify found differences between source and target: "
                            + "; ".join(f"{d.kind} {d.object}" for d in result.differences[:10]))
        return len(result.tables), None
    tables = list(resolve(src, _selection(record), strict=False).tables)
    # Both sides count at once: the downtime is the slower side's time, not the sum.
    with ThreadPoolExecutor(max_workers=2) as pool:
        src_counts, tgt_counts = pool.map(lambda ep: _count(ep, tables), (source, target))
    differing = [f"{t.qualified} (source {s:,}, target {g:,})"
                 for t, s, g in zip(tables, src_counts, tgt_counts, strict=True) if s != g]
    if differing:
        raise UserError("row counts differ after the target caught up: " + ", ".join(differing[:10]))
    return len(tables), sum(src_counts)


def _selection(record: state.OnlineState) -> Selection:
    """The patterns ``sync`` was given, resolved again on the source by each step that needs
    them (a table created since matches them just as the copy's would have)."""
    return Selection(schemas=tuple(record.schemas), exclude_tables=tuple(record.exclude_tables))


def _count(ep: Endpoint, tables: list[catalog.Table]) -> list[int]:
    with connect(ep, autocommit=True) as conn:
        counts = []
        for t in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(t.ident)).fetchone()
            counts.append(int(row[0]) if row else 0)
        return counts


def _undo_freeze(src: psycopg.Connection[Any], record: state.OnlineState, path: Any,
                 reporter: Reporter) -> None:
    try:
        freeze.unfreeze(src, record.source_dbname)
    except psycopg.Error as exc:
        reporter.warn(f"unfreezing the source failed ({redact_secrets(str(exc))}): run "
                      f"{freeze.unfreeze_command(record.source_dbname)} on it now")
        return
    record.frozen = False
    record.phase = "streaming"
    record.save(path)


def _keep_replicating(tgt: psycopg.Connection[Any], name: str, reporter: Reporter) -> None:
    """A failure while the subscription was being dropped may have left it disabled."""
    try:
        row = tgt.execute("SELECT subenabled, subslotname IS NOT NULL FROM pg_subscription "
                          "WHERE subname = %s", [name]).fetchone()
        if row is not None and not row[0] and row[1]:
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reporter.warn(f"could not check that subscription {name} is enabled on the target "
                      f"({redact_secrets(str(exc))}): see `rdsmigrate status`")
