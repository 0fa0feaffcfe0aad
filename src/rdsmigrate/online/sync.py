"""``rdsmigrate sync``: the consistent copy, then native logical replication from its instant.

Order of work, and why:
1. preflight with the online prerequisites (:mod:`rdsmigrate.prerequisites`), so nothing is
   created when something blocks;
2. ``REPLICA IDENTITY FULL`` on tables without a key, only with the user's consent;
3. the publication, *before* the slot: pgoutput decodes each change with the catalog as of that
   change, so a publication younger than the slot's start would not see the first changes;
4. the schema fingerprint, before the snapshot (see :mod:`.fingerprint`), and the state record;
5. the copy, whose snapshot is exported by a new persistent slot (``keep_slot``);
6. the subscription on the target, attached to that slot with ``copy_data = false``: the slot
   starts exactly at the copy's snapshot, so no change is lost or applied twice;
7. returns once the apply worker runs on the target and its walsender holds the slot.

If anything fails after step 3, the replication objects are removed again (a forgotten slot holds
WAL on the source until its disk fills); the target keeps whatever the copy wrote.
"""

from __future__ import annotations

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
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.db.selection import resolve
from rdsmigrate.errors import UserError
from rdsmigrate.online import fingerprint, replication, state
from rdsmigrate.online.freeze import writable
from rdsmigrate.online.settings import SyncOptions
from rdsmigrate.progress import Reporter


class SyncReport(BaseModel):
    source: str
    target: str
    name: str
    """Name of the slot, the publication and the subscription."""
    publication_scope: str
    consistent_lsn: str | None
    tables: int
    replica_identity_full: list[str]
    copy_report: CopyReport
    seconds: float
    state_path: Path

    def render(self, reporter: Reporter) -> None:
        self.copy_report.render(reporter)
        out = reporter.console
        for line in (
            f"streaming: subscription {self.name} on the target applies the source's changes "
            f"from {self.consistent_lsn} (the copy's snapshot); {self.tables} tables replicated "
            f"({self.publication_scope})",
            *(f"replica identity FULL set on {t}" for t in self.replica_identity_full),
            f"sync ready in {self.seconds:.1f} s; state: {self.state_path}",
            "next: `rdsmigrate status` to watch the lag, `rdsmigrate cutover` to switch, "
            "`rdsmigrate abort` to remove the replication objects",
        ):
            out.print(line, markup=False, highlight=False)


def run(source: Endpoint, target: Endpoint, options: SyncOptions, reporter: Reporter) -> SyncReport:
    started = time.monotonic()
    copy_options = options.copy_options
    selection = copy_options.selection
    path = state.location(options.state_dir, target)
    previous = state.load(options.state_dir, target)
    if previous is not None and previous.phase not in ("cut-over", "aborted"):
        raise UserError(f"an online migration to {target.describe()} is already recorded in {path} "
                        f"({previous.phase}, subscription {previous.name}): watch it with "
                        "`rdsmigrate status`, or remove it with `rdsmigrate abort` first")

    name = new_slot_name()
    # With keep_slot, preflight knows replication follows and requires a logical slot.
    copy_options = copy_options.model_copy(update={"keep_slot": name})
    with reporter.phase("preflight"):
        preflight.require_ready(preflight.run(
            source, target, copy_options, replica_identity_full=options.replica_identity_full))

    with connect(source, autocommit=True) as src:
        writable(src)
        selected = resolve(src, selection)
        tables = list(selected.tables)
        made_full = _set_replica_identity_full(src, prerequisites.without_identity(tables),
                                               reporter)
        everything = not (selection.schemas or selection.exclude_tables)
        all_tables = everything and prerequisites.source_role(src).superuser
        replication.create_publication(src, name, None if all_tables else tables)
        record = state.OnlineState(
            source=source.describe(), target=target.describe(), source_dbname=source.dbname,
            name=name, schemas=list(selection.schemas),
            exclude_tables=list(selection.exclude_tables), tables=[t.qualified for t in tables],
            fingerprint=fingerprint.take(src, selected),
            replica_identity_full=made_full, roles=copy_options.roles,
        )
        record.save(path)

    try:
        report = copy.run(source, target, copy_options, reporter)
        record.consistent_lsn = report.consistent_lsn
        record.save(path)
        with reporter.phase("replication (subscription on the target)"), \
                connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            replication.create_subscription(tgt, name, source)
            # The record again, on the target, for status/cutover/abort run from another machine.
            tgt.execute(sql.SQL("COMMENT ON SUBSCRIPTION {} IS {}").format(
                sql.Identifier(name), sql.Literal(record.model_dump_json())))
            replication.wait_streaming(src, tgt, name, options.streaming_timeout_s)
    except BaseException:
        _remove(source, target, name, reporter)
        record.phase = "aborted"
        record.save(path)
        raise
    record.phase = "streaming"
    record.save(path)
    return SyncReport(
        source=source.describe(), target=target.describe(), name=name,
        publication_scope="FOR ALL TABLES" if all_tables else "FOR TABLE list",
        consistent_lsn=report.consistent_lsn, tables=len(tables), replica_identity_full=made_full,
        copy_report=report, seconds=round(time.monotonic() - started, 3), state_path=path,
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


def _remove(source: Endpoint, target: Endpoint, name: str, reporter: Reporter) -> None:
    """Best effort after a failed sync: the replication objects must not outlive it."""
    try:
        with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            writable(src)
            replication.drop_subscription(tgt, name)
            replication.drop_publication(tgt, name)
            replication.drop_slot(src, name)
            replication.drop_publication(src, name)
        reporter.warn(f"sync failed: slot, publication and subscription {name} were removed; the "
                      "target keeps what was copied (rerun sync with --replace to start over)")
    except (psycopg.Error, UserError) as exc:
        reporter.warn(f"sync failed and removing {name} failed too ({source.redact(str(exc))}): "
                      "run `rdsmigrate abort`")
