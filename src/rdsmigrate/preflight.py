"""Checks both databases before anything is written, so a copy never stops half way for a
reason that was knowable up front.

Guarantees: reads only. Both sessions run ``READ ONLY`` transactions, so the servers themselves
refuse any write; the one probe that could fail (does the target accept ``xml``?) runs in a
savepoint. Nothing is created on either side, not even a temporary replication slot.

Does not guarantee the copy will succeed: privileges can change, disks can fill, and a check
reads catalogs, not every row. What it does find is reported as

- *blockers*: the copy would fail or be wrong (an unreadable table, a non-empty target, a missing
  extension, a column type the target refuses, a ``pg_dump`` too old for the source, no logical
  replication slot when replication is to follow the copy);
- *warnings*: the copy works, but something matters later (no logical slot for a plain copy, which
  then exports its snapshot without one, tables the online path cannot replicate, slots left by an
  earlier run, objects ``--replace`` will drop);
- *info*: what the copy carries over that plain ``pg_dump`` would not (database settings, large
  objects), and a size and time estimate.

The checks themselves live in :mod:`rdsmigrate.prerequisites` (shared with ``copy`` and
``sync``); this module opens the sessions, gathers the findings into a report and renders it.
Every message names the problem and its fix in one line, because it is also the error ``copy``
stops with (:func:`require_ready`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import BaseModel, computed_field

from rdsmigrate import prerequisites
from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError
from rdsmigrate.prerequisites import Finding, ServerInfo
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import CopyOptions

__all__ = ["Finding", "PreflightReport", "ServerInfo", "require_ready", "run"]

# Assumed streaming rate of one copy worker, for the time estimate only. It is what one COPY
# pipe between two servers on a fast network typically sustains; the real figure depends on the
# network, the disks and the row width, so the report says it is an estimate and shows this rate.
ASSUMED_MB_PER_S_PER_JOB = 40.0


class PreflightReport(BaseModel):
    source: ServerInfo
    target: ServerInfo
    pg_dump: str | None
    """The client programs copy will use (``pg_dump 15 in /usr/lib/postgresql/15/bin``), or None
    when none is recent enough (then a blocker says so)."""
    tables: int
    sequences: int
    large_objects: int
    extensions: list[str]
    database_settings: list[str]
    tables_without_key: list[str]
    wal_level: str
    free_replication_slots: int
    table_bytes: int
    """Heap and TOAST of the selected tables: what travels."""
    database_bytes: int
    """The whole source database, indexes and catalogs included."""
    estimated_bytes: int
    estimated_seconds: float
    assumed_mb_per_s: float
    """Aggregate rate the time estimate assumes: :data:`ASSUMED_MB_PER_S_PER_JOB` times jobs."""
    jobs: int
    blockers: list[Finding]
    warnings: list[Finding]
    info: list[Finding]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ready(self) -> bool:
        """No blockers: ``copy`` may start (and says so in ``--json`` too)."""
        return not self.blockers

    def render(self, reporter: Reporter) -> None:
        """The report and its verdict, on the reporter's console (stdout, as every command's
        result). A blocked preflight then ends like every other refusal of the tool: exit 2 and
        one ``error:`` line on stderr naming the problem and the fix (:func:`require_ready`)."""
        def say(text: str, style: str | None = None) -> None:
            reporter.console.print(text, markup=False, highlight=False, style=style)

        plural = prerequisites.plural
        src, tgt = self.source, self.target
        say(f"preflight {src.endpoint} -> {tgt.endpoint}", "bold")
        say(f"  source   PostgreSQL {src.version}, user {src.user}, wal_level {self.wal_level}, "
            f"{plural(self.free_replication_slots, 'free replication slot')}")
        say(f"  target   PostgreSQL {tgt.version}, user {tgt.user}")
        say(f"  client   {self.pg_dump or 'no pg_dump recent enough'}")
        extensions = ", ".join(self.extensions) or "none"
        say(f"  objects  {plural(self.tables, 'table')}, {plural(self.sequences, 'sequence')}, "
            f"{plural(self.large_objects, 'large object')}; extensions: {extensions}")
        say(f"  size     {human_bytes(self.table_bytes)} of table data "
            f"(database {human_bytes(self.database_bytes)})")
        say(f"  estimate {_duration(self.estimated_seconds)} for the rows (an estimate "
            f"assuming {ASSUMED_MB_PER_S_PER_JOB:.0f} MB/s per job x {self.jobs} jobs; index builds "
            "come on top)")
        for f in self.info:
            say(f"  info: {f.message}")
        for f in self.warnings:
            say(f"  warning: {f.message}", "yellow")
        for f in self.blockers:
            say(f"  BLOCKER: {f.message}", "red")
        if self.ready:
            say("ready to copy", "green")
        else:
            say(f"not ready: {plural(len(self.blockers), 'blocker')}", "red")


def require_ready(report: PreflightReport) -> None:
    """Raise the first blocker as a one-line UserError (its problem and fix apart, for the
    ``--json`` envelope); the caller writes nothing before this."""
    if not report.blockers:
        return
    first, more = report.blockers[0], len(report.blockers) - 1
    others = f" (+{more} more; run rdsmigrate preflight)" if more else ""
    fix = first.fixes
    if fix is None:
        raise UserError(first.problem + others)
    raise UserError(first.problem, fix=fix + others)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"about {seconds:.0f} s"
    if seconds < 3600:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def run(source: Endpoint, target: Endpoint, options: CopyOptions, *,
        replica_identity_full: bool = False) -> PreflightReport:
    """Connect to both sides (connection failures raise a one-line UserError) and check.

    ``replica_identity_full``: for ``sync``, the user consents to REPLICA IDENTITY FULL on tables
    without a key, so they do not block.
    """
    with _read_only(source) as src, _read_only(target) as tgt:
        ctx = prerequisites.Context(source, target, options, src, tgt,
                                    replica_identity_full=replica_identity_full)
        return _report(ctx)


def _read_only(ep: Endpoint) -> psycopg.Connection[Any]:
    conn = connect(ep)
    # Every transaction of this session is READ ONLY: the server refuses a write, whatever a
    # check (or a catalog function it calls) would try.
    conn.read_only = True
    catalog.without_jit(conn)
    return conn


def _report(ctx: prerequisites.Context) -> PreflightReport:
    findings = prerequisites.evaluate(ctx)
    tools = ctx.tools
    pg_dump = (None if isinstance(tools, UserError)
               else f"pg_dump {tools.major} in {tools.bindir}")
    role, tables = ctx.source_role, ctx.tables
    table_bytes = sum(t.bytes for t in tables)
    rate = ASSUMED_MB_PER_S_PER_JOB * ctx.options.jobs
    return PreflightReport(
        source=ctx.source_server, target=ctx.target_server, pg_dump=pg_dump, tables=len(tables),
        sequences=len(ctx.sequences), large_objects=ctx.large_objects,
        extensions=[f"{e.name} {e.version}" for e in ctx.extensions],
        database_settings=[prerequisites.setting_text(s) for s in ctx.settings],
        tables_without_key=[t.qualified for t in prerequisites.without_identity(tables)],
        wal_level=role.wal_level, free_replication_slots=role.free_slots,
        table_bytes=table_bytes, database_bytes=catalog.database_size(ctx.src),
        estimated_bytes=table_bytes,
        estimated_seconds=round(table_bytes / (rate * 1024 * 1024), 1),
        assumed_mb_per_s=rate, jobs=ctx.options.jobs,
        blockers=[f for f in findings if f.severity == "blocker"],
        warnings=[f for f in findings if f.severity == "warning"],
        info=[f for f in findings if f.severity == "info"],
    )
