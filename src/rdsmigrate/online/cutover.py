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
7. drop the subscription, in the same transaction as the record saying so (``detached``): the
   target is now on its own and writable. The write downtime is measured from the freeze to here.
8. drop the slot and the publication on the source; store the report in the record.

Every step is recorded on the target as it completes (:mod:`.state`), the freeze before it is
made, so a rerun after any interruption continues: with the source still frozen by this
cutover it re-applies the freeze (idempotent) and repeats steps 3 to 6, which must hold for the
source as it is now and cost little once caught up; after step 7 it only finishes step 8; after 8
it shows the stored report again.

The source stays frozen afterwards, so a forgotten application instance cannot write to the old
database; reopening it is a decision (``rdsmigrate unfreeze --force``, or the SQL the report
names). If anything before step 7 fails, or a signal (SIGINT, SIGTERM, SIGHUP) arrives, the
source is unfrozen and replication keeps running: the target is still a live replica, and the
cutover can be tried again. From step 7 on, nothing unfreezes the source as a side effect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from rdsmigrate import interrupts
from rdsmigrate.copy.objects import copy_large_objects, copy_sequences
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect, redact_secrets
from rdsmigrate.db.selection import Resolved, resolve
from rdsmigrate.errors import EXIT_INTERNAL, EXIT_USER, Interrupted, RdsMigrateError, UserError
from rdsmigrate.online import counts, freeze, replication, state, unlogged
from rdsmigrate.online.settings import CutoverOptions
from rdsmigrate.online.status import DRIFT_FIX, OnlineStatus, measure
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import Selection, VerifyOptions
from rdsmigrate.testhook import pause

POLL_S = 0.02
CUTOVER_STEPS = ("frozen", "caught-up", "unlogged-copied", "sequences-set", "large-objects", "verified",
                 "subscription-dropped", "publication-dropped", "done")


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
    """From the freeze of the source to the target being ready for writes (wall clock, so a
    cutover continued after an interruption counts the time in between)."""
    steps: dict[str, float]
    sessions_ended: int
    sequences: int
    large_objects: int
    unlogged_tables: int = 0
    """Unlogged tables copied again during the freeze (``sync --unlogged copy-at-cutover``)."""
    unlogged_rows: int = 0
    verify: str
    tables_checked: int
    rows_checked: int | None
    tables_recounted_frozen: int | None = None
    """With ``--verify counts``: tables counted while the source was frozen, the others' counts
    coming from the baseline taken before the freeze (:mod:`rdsmigrate.online.counts`)."""
    source_frozen: bool
    unfreeze_command: str
    """The SQL that reopens the source, working from any database (the frozen one included)."""
    notes: list[str]
    continued: bool = False
    """This run continued a cutover interrupted earlier."""
    shown_again: bool = False
    """A rerun after the cutover had finished: the stored report, nothing done."""

    def render(self, reporter: Reporter) -> None:
        def line(text: str) -> None:
            reporter.console.print(text, markup=False, highlight=False)

        if self.shown_again:
            line("this cutover had already finished; its report, kept on the target:")
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in self.steps.items())
        checked = (f"{self.tables_checked} tables, {self.rows_checked:,} rows counted on both sides"
                   if self.rows_checked is not None else
                   f"{self.tables_checked} tables verified ({self.verify})")
        line(f"cut over to {self.target}: write downtime {self.write_downtime_s:.2f} s ({steps})"
             + (" (continued after an interruption)" if self.continued else ""))
        line(f"target caught up to {self.final_lsn} (lag before the freeze "
             f"{human_bytes(self.lag_bytes_before)}); {self.sequences} sequences set; "
             f"{self.large_objects} large objects copied again; "
             + (f"{self.unlogged_tables} unlogged tables ({self.unlogged_rows:,} rows) copied "
                "again; " if self.unlogged_tables else "") + f"{checked}; "
             f"{self.sessions_ended} source sessions ended")
        line(f"replication objects {self.name} removed; the target is writable")
        line(f"the source {self.source} stays frozen (new sessions read-only) so nothing writes "
             f"to it by mistake; to reopen it on purpose: rdsmigrate unfreeze --source ... "
             f"--force, or {self.unfreeze_command}")
        for n in self.notes:
            line(f"note: {n}")


def run(source: Endpoint, target: Endpoint, options: CutoverOptions,
        reporter: Reporter) -> CutoverReport:
    cache = state.location(options.state_dir, target)
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        freeze.writable(src)
        record = state.latest(tgt)
        if record is None:
            raise UserError(f"no online migration to {target.describe()} is recorded on it: "
                            "start one with `rdsmigrate sync`")
        if record.phase == "cut-over" and record.cutover is not None:
            reporter.info(f"cutover of {record.name} already finished: showing its report again")
            return CutoverReport.model_validate({**record.cutover, "shown_again": True})
        if record.phase == "syncing":
            raise UserError(f"the sync of {record.name} did not finish (done: "
                            f"{', '.join(record.steps) or 'nothing'}): rerun the same "
                            "`rdsmigrate sync` to continue it, then cut over")
        if record.phase != "detached":
            _until_detached(source, target, src, tgt, record, options, reporter, cache)
        return _finish(src, tgt, record, options, reporter, cache)


def _until_detached(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
                    tgt: psycopg.Connection[Any], record: state.OnlineState,
                    options: CutoverOptions, reporter: Reporter, cache: Path) -> None:
    """Steps 1 to 7; on any failure or signal, the source is unfrozen if this tool froze it."""
    continuing = record.phase == "cutting-over" and record.frozen and freeze.is_frozen(src)
    if record.phase == "cutting-over" and not continuing:
        # Interrupted earlier, and the source reopened since: a cutover from the start.
        _forget_cutover(record)
    if continuing:
        reporter.info(f"cutover: continuing {record.name}, the source still frozen by it (done: "
                      f"{', '.join(s for s in record.steps if s in CUTOVER_STEPS) or 'nothing'})")
    try:
        if continuing:
            _keep_replicating(tgt, record.name, reporter)
            replication.wait_streaming(src, tgt, record.name, options.timeout_s)
        before = measure(src, tgt, record, recorded=True, retained_warn_bytes=1 << 62,
                         lag_probe_s=0)
        _refuse_unless_ready(before, options, continuing=continuing)
        assert before.lag_bytes is not None
        # Resolved and counted while the source still takes writes: outside the downtime.
        selected = _Selected.now(src, record)
        base = (counts.baseline(source, target, src, tgt, record.name, selected.resolved.tables,
                                options.jobs, options.timeout_s)
                if options.verify == "counts" else None)
        if not continuing:
            record.phase = "cutting-over"
            record.frozen = True
            record.progress = {"frozen_at": time.time(), "lag_bytes_before": before.lag_bytes}
            # Recorded before the freeze: a crash while frozen leaves the rerun and `abort` a trace.
            state.save(tgt, record, cache)
        record.progress["continued"] = continuing or bool(record.progress.get("continued"))
        _switch(source, target, src, tgt, record, options, reporter, cache, base, selected)
    except BaseException as exc:
        if not record.frozen:
            raise  # refused before the freeze: nothing to undo
        if _detached_on_server(target, record.name, unsure=bool(record.progress.get("detaching"))):
            # The detach committed although its answer never arrived: never unfreeze now.
            text = (f"cutover stopped ({type(exc).__name__}) as the target was being detached: "
                    "the source STAYS frozen; run cutover again to finish (it reads on the "
                    "target whether the detach committed)")
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(text) from None
            raise CutoverFailed(text, EXIT_USER) from None
        unfrozen = _undo_freeze(source, target, record, cache, reporter)
        _keep_replicating(tgt, record.name, reporter)
        outcome = ("the source was unfrozen (it takes writes again)" if unfrozen else
                   "unfreezing the source FAILED: run `rdsmigrate unfreeze --source ... --target "
                   f"...` or {freeze.unfreeze_command(record.source_dbname)}")
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"cutover interrupted ({interrupts.name()}): {outcome} and "
                              f"replication {record.name} keeps running; run cutover again when "
                              "ready") from None
        code = exc.exit_code if isinstance(exc, RdsMigrateError) else (
            EXIT_USER if isinstance(exc, psycopg.OperationalError) else EXIT_INTERNAL)
        raise CutoverFailed(
            f"cutover failed: {redact_secrets(str(exc))}. {outcome[0].upper()}{outcome[1:]} and "
            f"replication {record.name} is still running; fix the cause and run cutover again, "
            "or `rdsmigrate abort`", code) from None


def _detached_on_server(target: Endpoint, name: str, *, unsure: bool) -> bool:
    """What the target's record says, read afresh (the command's own session may be broken).
    When it cannot be read: detached only if the detaching transaction had been sent
    (``unsure``), since it may have committed; the rerun reads the truth."""
    try:
        with connect(target, autocommit=True) as tgt:
            current = state.latest(tgt)
    except (psycopg.Error, UserError):
        return unsure
    return current is not None and current.name == name and current.detached


def _forget_cutover(record: state.OnlineState) -> None:
    record.phase = "streaming"
    record.frozen = False
    record.steps = [s for s in record.steps if s not in CUTOVER_STEPS]
    record.progress = {}


def _finish(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
            record: state.OnlineState, options: CutoverOptions, reporter: Reporter,
            cache: Path) -> CutoverReport:
    """Step 8, after the detach: never unfreezes; an interruption leaves it to a rerun."""
    progress = record.progress
    downtime = float(progress.get("detached_at", time.time())) - float(
        progress.get("frozen_at", time.time()))
    reporter.info(f"target ready: write downtime {downtime:.2f} s")
    notes: list[str] = []
    t0 = time.monotonic()
    try:
        pause("cutover:subscription-dropped")
        try:
            replication.drop_slot(src, record.name)
            replication.drop_publication(src, record.name)
        except (psycopg.Error, UserError) as exc:
            notes.append(f"dropping the slot or publication {record.name} on the source failed "
                         f"({redact_secrets(str(exc))}): run `rdsmigrate abort` to remove them")
        record.mark("publication-dropped")
        state.save(tgt, record, cache)
        pause("cutover:publication-dropped")
    except KeyboardInterrupt:
        raise Interrupted(
            f"cutover interrupted ({interrupts.name()}) after the target was detached: the target "
            "is on its own and the source STAYS frozen; run cutover again to remove the slot and "
            "publication and print the report") from None
    timings = dict(progress.get("steps", {}))
    timings["source cleanup (after downtime)"] = round(time.monotonic() - t0, 3)
    report = CutoverReport(
        source=record.source, target=record.target, name=record.name,
        lag_bytes_before=int(progress.get("lag_bytes_before", 0)),
        final_lsn=str(progress.get("final_lsn", "?")), write_downtime_s=round(downtime, 3),
        steps=timings, sessions_ended=int(progress.get("sessions_ended", 0)),
        sequences=int(progress.get("sequences", 0)),
        large_objects=int(progress.get("large_objects", 0)),
        unlogged_tables=int(progress.get("unlogged_tables", 0)),
        unlogged_rows=int(progress.get("unlogged_rows", 0)),
        verify=str(progress.get("verify", options.verify)),
        tables_checked=int(progress.get("tables_checked", 0)),
        rows_checked=progress.get("rows_checked"),
        tables_recounted_frozen=progress.get("tables_recounted_frozen"),
        source_frozen=freeze.is_frozen(src),
        unfreeze_command=freeze.unfreeze_command(record.source_dbname), notes=notes,
        continued=bool(progress.get("continued")),
    )
    record.phase = "cut-over"
    record.frozen = False  # the tool no longer holds it: the application moved, reopening is the user's call
    record.cutover = report.model_dump(mode="json")
    record.mark("done")
    state.save(tgt, record, cache)
    return report


def _refuse_unless_ready(status: OnlineStatus, options: CutoverOptions, *,
                         continuing: bool) -> None:
    if status.drift:
        raise UserError(
            "the source's schema changed since the copy, and logical replication does not carry "
            "DDL: " + "; ".join(status.drift) + ". " + DRIFT_FIX)
    if not status.streaming:
        raise UserError(
            f"replication {status.name} is not streaming (subscription "
            f"{'present' if status.subscription else 'missing'}, apply worker "
            f"{'running' if status.worker_running else 'stopped'}, slot "
            f"{'active' if status.slot_active else 'inactive'}"
            f"{', no reply from the apply worker for a while' if status.silent else ''}): "
            "see `rdsmigrate status`")
    if continuing:
        return  # frozen by this cutover: the lag can only shrink
    if status.frozen:
        raise UserError(
            "the source database is already frozen (default_transaction_read_only), and not by a "
            "cutover recorded on the target: reopen it with `rdsmigrate unfreeze --source ... "
            "--target ...` (or the SQL BEGIN READ WRITE; ALTER DATABASE .. RESET "
            "default_transaction_read_only; COMMIT), then cut over")
    if status.lag_bytes is None or status.lag_bytes > options.max_lag_bytes:
        raise UserError(
            f"the target is {human_bytes(status.lag_bytes or 0)} behind the source, above "
            f"--max-lag {human_bytes(options.max_lag_bytes)}: wait for it to catch up "
            "(`rdsmigrate status --watch`) so the write downtime stays short")


def _switch(source: Endpoint, target: Endpoint, src: psycopg.Connection[Any],
            tgt: psycopg.Connection[Any], record: state.OnlineState, options: CutoverOptions,
            reporter: Reporter, cache: Path, base: counts.Baseline | None,
            selected: _Selected) -> None:
    """Steps 2 to 7, each recorded once done; any exception leaves the caller to unfreeze."""
    progress = record.progress
    timings: dict[str, float] = progress.setdefault("steps", {})
    t0 = time.monotonic()

    def step(name: str, timing: str, **results: Any) -> None:
        nonlocal t0
        now = time.monotonic()
        timings[timing] = round(now - t0, 3)
        t0 = now
        progress.update(results)
        record.mark(name)
        state.save(tgt, record, cache)

    pause("cutover:before-freeze")
    frozen = freeze.freeze(src, record.source_dbname)
    pause("cutover:freeze")
    # The insert position, not pg_current_wal_lsn() (the write position): a commit made with
    # synchronous_commit = off may still sit in the WAL buffers, behind the write position.
    row = src.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    final_lsn = str(row[0])
    step("frozen", "freeze", final_lsn=final_lsn,
         sessions_ended=int(progress.get("sessions_ended", 0)) + frozen.terminated)
    pause("cutover:catch-up")
    _wait_applied(src, record.name, final_lsn, options.timeout_s)
    step("caught-up", "catch-up")
    if record.unlogged_at_cutover:
        # Not replicated (sync --unlogged copy-at-cutover): copied again now that writes stopped.
        recopied = unlogged.copy_again(src, tgt, record.unlogged_at_cutover)
        step("unlogged-copied", "unlogged tables", unlogged_tables=recopied.tables,
             unlogged_rows=recopied.rows)
    pause("cutover:sequences")
    resolved = selected.at_freeze(src, record)
    # nextval is refused in read-only transactions: the frozen source's sequences are final.
    step("sequences-set", "sequences", sequences=copy_sequences(src, tgt, resolved))
    n_lo, _ = copy_large_objects(src, tgt, reporter, roles=record.roles)
    _drop_extra_large_objects(src, tgt)
    step("large-objects", "large objects", large_objects=n_lo)
    pause("cutover:verify")
    tables_checked, rows_checked, recounted = _verify(source, target, src, tgt, record, options,
                                                      reporter, base, resolved.tables)
    step("verified", f"verify ({options.verify})", verify=options.verify,
         tables_checked=tables_checked, rows_checked=rows_checked,
         tables_recounted_frozen=recounted)
    pause("cutover:detach")
    if not freeze.is_frozen(src):
        raise UserError("the source was unfrozen while the cutover ran (by hand?): writes made "
                        "since would not reach the target")
    # The point of no return, committed together with the record that says so.
    replication.detach_slot(tgt, record.name)
    now = time.monotonic()
    timings["subscription dropped"] = round(now - t0, 3)
    record.phase = "detached"
    record.mark("subscription-dropped")
    progress["detached_at"] = time.time()
    progress["detaching"] = True  # in memory: the failure path must not unfreeze blindly now
    with tgt.transaction():
        tgt.execute(sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(record.name)))
        state.save(tgt, record)
    state.write_cache(cache, record)


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
            tgt: psycopg.Connection[Any], record: state.OnlineState, options: CutoverOptions,
            reporter: Reporter, base: counts.Baseline | None,
            tables: Sequence[catalog.Table]) -> tuple[int, int | None, int | None]:
    """(tables checked, rows counted or None, tables counted while frozen or None); raises
    UserError on any difference."""
    if options.verify == "none":
        return 0, None, None
    if options.verify == "full":
        from rdsmigrate import verify

        result = verify.run(source, target,
                            VerifyOptions(jobs=options.jobs, selection=_selection(record),
                                          roles=record.roles),
                            reporter)
        if not result.identical:
            raise UserError("verify found differences between source and target: "
                            + "; ".join(f"{d.kind} {d.object}" for d in result.differences[:10]))
        return len(result.tables), None, None
    checked = counts.check_frozen(source, target, src, tgt, tables, base, options.jobs)
    return checked.tables, checked.rows, checked.recounted


@dataclass(frozen=True)
class _Selected:
    """The selection resolved before the freeze, and the catalog's fingerprint just before."""

    fingerprint: tuple[Any, ...]
    resolved: Resolved

    @classmethod
    def now(cls, src: psycopg.Connection[Any], record: state.OnlineState) -> _Selected:
        mark = catalog.relations_fingerprint(src)
        return cls(mark, resolve(src, _selection(record), strict=False))

    def at_freeze(self, src: psycopg.Connection[Any], record: state.OnlineState) -> Resolved:
        """The tables and sequences as the frozen source has them: resolved again only if one
        was created, dropped or renamed since :meth:`now` (resolving 10,000 tables took 0.6 s
        of the write downtime, twice)."""
        if catalog.relations_fingerprint(src) == self.fingerprint:
            return self.resolved
        return resolve(src, _selection(record), strict=False)


def _selection(record: state.OnlineState) -> Selection:
    """The patterns ``sync`` was given, resolved again on the source by each step that needs
    them (a table created since matches them just as the copy's would have)."""
    return Selection(schemas=tuple(record.schemas), exclude_tables=tuple(record.exclude_tables))


def _undo_freeze(source: Endpoint, target: Endpoint, record: state.OnlineState, cache: Path,
                 reporter: Reporter) -> bool:
    """Unfreeze and record it, on fresh connections (the command's own may be what failed).
    Returns whether the source was unfrozen."""
    try:
        with connect(source, autocommit=True) as src:
            freeze.writable(src)
            freeze.unfreeze(src, record.source_dbname)
    except (psycopg.Error, UserError) as exc:
        reporter.warn(f"unfreezing the source failed ({redact_secrets(str(exc))}): run "
                      f"{freeze.unfreeze_command(record.source_dbname)} now")
        return False
    _forget_cutover(record)
    try:
        with connect(target, autocommit=True) as tgt:
            state.save(tgt, record, cache)
    except (psycopg.Error, UserError):
        pass  # the rerun sees the source unfrozen and starts the cutover afresh
    return True


def _keep_replicating(tgt: psycopg.Connection[Any], name: str, reporter: Reporter) -> None:
    """A cutover stopped while detaching may have left the subscription disabled, without its
    slot: attach it to the slot again and enable it."""
    try:
        row = tgt.execute("SELECT subenabled, subslotname IS NOT NULL FROM pg_subscription "
                          "WHERE subname = %s", [name]).fetchone()
        ident = sql.Identifier(name)
        if row is not None and not row[1]:
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = {})").format(
                ident, sql.Literal(name)))
        if row is not None and not row[0]:
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
    except psycopg.Error as exc:
        reporter.warn(f"could not check that subscription {name} is enabled on the target "
                      f"({redact_secrets(str(exc))}): see `rdsmigrate status`")
