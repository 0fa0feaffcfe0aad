"""``rdsmigrate sync``: the consistent copy, then native logical replication from its instant.

Order of work, and why:
1. preflight with the online prerequisites (:mod:`rdsmigrate.prerequisites`), so nothing is
   created when something blocks;
2. ``REPLICA IDENTITY FULL`` on tables without a key, only with the user's consent;
3. the record on the target (:mod:`.state`), naming the objects before any exists;
4. the publication, *before* the slot: pgoutput decodes each change with the catalog as of that
   change, so a publication younger than the slot's start would not see the first changes;
5. the copy, whose snapshot is exported by a new persistent slot (``keep_slot``); recorded
   ``copied`` once it finished;
6. the subscription on the target, attached to that slot with ``copy_data = false``: the slot
   starts exactly at the copy's snapshot, so no change is lost or applied twice;
7. returns once the apply worker runs on the target and its walsender holds the slot.

A rerun of the same ``sync`` continues an interrupted one, from the record on the target (so from
any machine, with an empty ``--state-dir``): before the copy finished it starts the copy again
(the exported snapshot died with the interrupted command, and rows from two snapshots would not
match one slot), replacing what the interrupted copy wrote; after, it keeps the copy and the slot
and only creates the subscription and waits for streaming. A rerun once streaming says so and
changes nothing.

On a failure or a signal (SIGINT, SIGTERM, SIGHUP): before the copy finished, the slot and the
publication are removed (a slot holds WAL on the source until its disk fills) and the record
stays for the rerun; after, the slot is kept, recorded, for the rerun to use. The messages say
which.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from rdsmigrate import copy, preflight, prerequisites
from rdsmigrate.copy.report import CopyReport
from rdsmigrate.copy.snapshot import new_slot_name
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect, redact_secrets
from rdsmigrate.db.selection import resolve
from rdsmigrate.errors import Interrupted, RdsMigrateError, UserError
from rdsmigrate.online import fingerprint, replication, state
from rdsmigrate.online.freeze import is_frozen, writable
from rdsmigrate.online.settings import SyncOptions
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import Selection
from rdsmigrate.testhook import pause

PUBLICATION, COPIED, SUBSCRIPTION, STREAMING = "publication", "copied", "subscription", "streaming"


class SyncReport(BaseModel):
    source: str
    target: str
    name: str
    """Name of the slot, the publication and the subscription."""
    publication_scope: str
    consistent_lsn: str | None
    tables: int
    replica_identity_full: list[str]
    unlogged_at_cutover: list[str] = []
    """Unlogged tables not replicated, that the cutover copies again (``--unlogged``)."""
    copy_report: CopyReport | None
    """None when this run found the copy already done (a rerun)."""
    continued: list[str] = []
    """The steps an earlier, interrupted run had done, which this one kept."""
    seconds: float
    state_path: Path

    def render(self, reporter: Reporter) -> None:
        if self.copy_report is not None:
            self.copy_report.render(reporter)
        out = reporter.console
        for line in (
            *([f"continued an interrupted sync (done before: {', '.join(self.continued)})"]
              if self.continued else []),
            f"streaming: subscription {self.name} on the target applies the source's changes "
            f"from {self.consistent_lsn} (the copy's snapshot); {self.tables} tables replicated "
            f"({self.publication_scope})",
            *(f"replica identity FULL set on {t}" for t in self.replica_identity_full),
            *([f"{len(self.unlogged_at_cutover)} unlogged table(s) not replicated, copied again "
               "by the cutover while the source is frozen: " + ", ".join(self.unlogged_at_cutover)]
              if self.unlogged_at_cutover else []),
            f"sync ready in {self.seconds:.1f} s; recorded on the target in "
            f"{catalog.TOOL_SCHEMA}.migration (cache: {self.state_path})",
            "next: `rdsmigrate status` to watch the lag, `rdsmigrate cutover` to switch, "
            "`rdsmigrate abort` to remove the replication objects",
        ):
            out.print(line, markup=False, highlight=False)


def run(source: Endpoint, target: Endpoint, options: SyncOptions, reporter: Reporter) -> SyncReport:
    started = time.monotonic()
    # Every prerequisite check (preflight, and the copy's own) knows the unlogged choice.
    options = options.model_copy(update={"copy_options": options.copy_options.model_copy(
        update={"unlogged_at_cutover": options.unlogged == "copy-at-cutover"})})
    selection = options.copy_options.selection
    cache = state.location(options.state_dir, target)
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        writable(src)
        record = _unfinished(tgt, target, selection)
        if record is not None and record.phase == "streaming" and _subscribed(tgt, record.name):
            reporter.info(f"sync: {record.name} is already streaming (recorded on the target): "
                          "nothing to do")
            return _report(source, target, record, None, [], started, cache)
        if is_frozen(src):
            reporter.warn(f"the source database {source.dbname} is frozen (new sessions "
                          "read-only): its applications cannot write; the target does not "
                          "inherit the freeze")
    # Before anything is created: a subscription the target would refuse fails after the copy.
    reached = _subscription_source(source, target, options, reporter)
    continued = list(record.steps) if record is not None else []
    rerun = record is not None
    if record is None:
        record = _start(source, target, options, reporter, cache)
    else:
        reporter.info(f"sync: continuing {record.name} from the record on the target (done: "
                      f"{', '.join(continued) or 'nothing yet'})")
        _prepare_rerun(source, target, record, options, reporter, cache)

    report: CopyReport | None = None
    try:
        if not record.done(COPIED):
            copy_options = options.copy_options.model_copy(update={
                "keep_slot": record.name,
                # A rerun replaces what the interrupted copy wrote.
                "replace": options.copy_options.replace or rerun})
            report = copy.run(source, target, copy_options, reporter)
            record.consistent_lsn = report.consistent_lsn
            record.copy_report = report.model_dump(mode="json")
            record.mark(COPIED)
            _save(target, record, cache)
        pause("sync:copied")
        with reporter.phase("replication (subscription on the target)"), \
                connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            if not _subscribed(tgt, record.name):
                replication.create_subscription(tgt, record.name, source, reached)
            record.mark(SUBSCRIPTION)
            state.save(tgt, record, cache)
            pause("sync:subscription")
            replication.wait_streaming(src, tgt, record.name, options.streaming_timeout_s)
    except BaseException as exc:
        _after_failure(source, target, record, cache, reporter, interrupted=isinstance(
            exc, KeyboardInterrupt | Interrupted))
        if isinstance(exc, RdsMigrateError) and "--resume" in str(exc):
            raise _for_sync(exc) from None
        raise
    record.phase = "streaming"
    record.mark(STREAMING)
    _save(target, record, cache)
    return _report(source, target, record, report, continued, started, cache)


def _for_sync(exc: RdsMigrateError) -> RdsMigrateError:
    """The copy's advice (``copy --resume``) is not sync's: a rerun of sync is its resume."""
    kept = re.sub(r"[^.;]*--resume[^.;]*[.;]?", "", str(exc)).strip(" .;:")
    return type(exc)(f"{kept}; rerun the same `rdsmigrate sync` to continue (a rerun is sync's "
                     "resume)")


def _subscription_source(source: Endpoint, target: Endpoint, options: SyncOptions,
                         reporter: Reporter) -> replication.SubscriptionSource:
    """The connection string the target server will use, from the runner's own connection (so
    a ``.pgpass`` password is carried too), built before anything is created: a bad
    ``--source-as-seen-by-target`` or sslmode is refused now, not after the copy (preflight's
    ``subscription-password`` refuses a PostgreSQL 16+ target without a password)."""
    with connect(source, autocommit=True) as src:
        reached = replication.subscription_source_of(
            src, seen_by_target=options.source_as_seen_by_target,
            sslmode=options.subscription_sslmode)
    for note in reached.notes:
        reporter.info(note)
    return reached


def _unfinished(tgt: psycopg.Connection[Any], target: Endpoint,
                selection: Selection) -> state.OnlineState | None:
    """The migration this sync continues, or None to start one; refuses what a sync must not
    touch (a cutover under way, another selection)."""
    record = state.latest(tgt)
    if record is None or record.phase in ("cut-over", "aborted"):
        return None
    if record.phase in ("cutting-over", "detached"):
        raise UserError(
            f"a cutover of {record.name} to {target.describe()} is recorded ({record.phase}): run "
            "`rdsmigrate cutover` again to finish it, or `rdsmigrate abort` to stop it")
    if (tuple(record.schemas), tuple(record.exclude_tables)) != (
            tuple(selection.schemas), tuple(selection.exclude_tables)):
        raise UserError(
            f"the online migration {record.name} recorded on {target.describe()} selects "
            f"--schema {record.schemas or 'all'} --exclude-table {record.exclude_tables or 'none'}"
            ": rerun sync with that selection to continue it, or `rdsmigrate abort` first")
    return record


def _subscribed(tgt: psycopg.Connection[Any], name: str) -> bool:
    return tgt.execute(
        "SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = (SELECT oid FROM "
        "pg_database WHERE datname = current_database())", [name]).fetchone() is not None


def _start(source: Endpoint, target: Endpoint, options: SyncOptions, reporter: Reporter,
           cache: Path) -> state.OnlineState:
    """Checks, consent, the record, then the publication: everything before the copy."""
    selection = options.copy_options.selection
    name = new_slot_name()
    # With keep_slot, preflight knows replication follows and requires a logical slot.
    with reporter.phase("preflight"):
        preflight.require_ready(preflight.run(
            source, target, options.copy_options.model_copy(update={"keep_slot": name}),
            replica_identity_full=options.replica_identity_full))
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        writable(src)
        selected = resolve(src, selection)
        # Replication cannot carry unlogged tables: preflight refused them unless the user
        # chose to have the cutover copy them again.
        not_logged = [t.qualified for t in selected.tables if t.unlogged]
        tables = [t for t in selected.tables if not t.unlogged]
        made_full = _set_replica_identity_full(src, prerequisites.without_identity(tables),
                                               reporter)
        everything = not (selection.schemas or selection.exclude_tables)
        # FOR ALL TABLES leaves unlogged tables out by itself.
        all_tables = everything and prerequisites.source_role(src).superuser
        record = state.OnlineState(
            source=source.describe(), target=target.describe(), source_dbname=source.dbname,
            name=name, schemas=list(selection.schemas),
            exclude_tables=list(selection.exclude_tables), tables=[t.qualified for t in tables],
            fingerprint=fingerprint.take(src, selected),
            replica_identity_full=made_full, roles=options.copy_options.roles,
            publication_scope="FOR ALL TABLES" if all_tables else "FOR TABLE list",
            unlogged_at_cutover=not_logged,
        )
        # Recorded before the first object exists: whatever a crash leaves has a name on record.
        state.ensure_table(tgt)
        state.save(tgt, record, cache)
        pause("sync:recorded")
        replication.create_publication(src, name, None if all_tables else tables)
        record.mark(PUBLICATION)
        state.save(tgt, record, cache)
    return record


def _prepare_rerun(source: Endpoint, target: Endpoint, record: state.OnlineState,
                   options: SyncOptions, reporter: Reporter, cache: Path) -> None:
    """Bring the servers back to a step the rerun can continue from."""
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        writable(src)
        slot = src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                           [record.name]).fetchone()
        if record.done(COPIED) and slot is None:
            reporter.warn(f"the slot {record.name} is gone from the source, so the changes since "
                          "the copy are too: copying again")
            record.steps = [s for s in record.steps if s == PUBLICATION]
        if not record.done(COPIED):
            # The copy starts again from a new snapshot: the old slot's start matches nothing.
            replication.drop_subscription(tgt, record.name)
            replication.drop_slot(src, record.name)
            record.steps = [s for s in record.steps if s == PUBLICATION]
        if src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                       [record.name]).fetchone() is None:
            if record.done(COPIED):
                raise UserError(
                    f"the publication {record.name} is gone from the source although the copy "
                    "finished: `rdsmigrate abort`, then `rdsmigrate sync --replace` to start over")
            all_tables = record.publication_scope == "FOR ALL TABLES"
            selection = options.copy_options.selection
            selected = resolve(src, selection)
            tables = [t for t in selected.tables if not t.unlogged]
            replication.create_publication(src, record.name, None if all_tables else tables)
            record.tables = [t.qualified for t in tables]
            record.fingerprint = fingerprint.take(src, selected)
        record.mark(PUBLICATION)
        state.save(tgt, record, cache)


def _save(target: Endpoint, record: state.OnlineState, cache: Path) -> None:
    with connect(target, autocommit=True) as tgt:
        state.save(tgt, record, cache)


def _report(source: Endpoint, target: Endpoint, record: state.OnlineState,
            copied: CopyReport | None, continued: list[str], started: float,
            cache: Path) -> SyncReport:
    return SyncReport(
        source=source.describe(), target=target.describe(), name=record.name,
        publication_scope=record.publication_scope, consistent_lsn=record.consistent_lsn,
        tables=len(record.tables), replica_identity_full=record.replica_identity_full,
        unlogged_at_cutover=record.unlogged_at_cutover, copy_report=copied, continued=continued, seconds=round(time.monotonic() - started, 3),
        state_path=cache,
    )


def _set_replica_identity_full(conn: psycopg.Connection[Any], tables: list[catalog.Table],
                               reporter: Reporter) -> list[str]:
    """Only called once the user consented (``--replica-identity-full``); says what it changes."""
    for t in tables:
        reporter.warn(f"{t.qualified} has no primary key or replica identity: setting REPLICA "
                      "IDENTITY FULL (as --replica-identity-full allows); every UPDATE and DELETE "
                      "on it now logs the whole old row, and the target finds rows by all columns")
        conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(t.ident))
    return [t.qualified for t in tables]


def _after_failure(source: Endpoint, target: Endpoint, record: state.OnlineState, cache: Path,
                   reporter: Reporter, *, interrupted: bool) -> None:
    """The same cleanup for a failure and a signal (see the module docstring); best effort."""
    name = record.name
    what = "sync interrupted" if interrupted else "sync failed"
    try:
        with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            writable(src)
            if record.done(COPIED):
                message = (
                    f"{what} after the copy finished: the copy and the slot {name} are kept "
                    "(recorded on the target; the slot holds WAL on the source until then): rerun "
                    "the same `rdsmigrate sync` to continue, or `rdsmigrate abort` to remove them")
            else:
                replication.drop_subscription(tgt, name)
                replication.drop_slot(src, name)
                replication.drop_publication(src, name)
                record.steps = []
                state.save(tgt, record, cache)
                message = (
                    f"{what} before the copy finished: the slot and publication {name} were "
                    "removed (nothing holds WAL on the source); rerun the same `rdsmigrate sync` "
                    "to copy again (it replaces what this run copied), or `rdsmigrate abort`")
    except (psycopg.Error, UserError, OSError) as exc:
        message = (f"{what} and its cleanup failed too ({redact_secrets(str(exc))}): rerun "
                   f"`rdsmigrate sync` to continue, or `rdsmigrate abort` to remove {name}")
    with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
        reporter.warn(message)
