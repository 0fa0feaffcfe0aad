"""``rdsmigrate status``: how far behind the target is, and anything that would stop a cutover.

- lag in bytes: the source's current WAL insert position minus the slot's ``confirmed_flush_lsn`` (what
  the target has applied *and* flushed); in seconds: measured, not estimated (``probe_lag``): how
  long the target takes to confirm the WAL position the source had reached when asked. The
  walsender's ``replay_lag`` is no substitute: the subscriber reports "applied" as soon as it has
  applied what it was sent, so ``replay_lag`` reads NULL or about 0 under a steady load even
  while the target's flush, which the slot's position follows, trails by megabytes;
- retained WAL: the source WAL the slot keeps from being recycled (``restart_lsn``): a slot left
  behind by a stopped migration grows it until the source's disk is full, hence the warning;
- the apply worker (``pg_stat_subscription``) and its error counts (``pg_stat_subscription_stats``
  on PostgreSQL 15+; the error text itself is only in the target server's log);
- per-table state (``pg_subscription_rel``): ``r`` (ready) for every table, as the copy did the
  initial load (``copy_data = false``);
- DDL drift: the source's schema fingerprint against the one recorded at copy time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel

from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.db.selection import resolve
from rdsmigrate.db.tools import server_major
from rdsmigrate.errors import UserError
from rdsmigrate.online import fingerprint, state
from rdsmigrate.online.freeze import is_frozen
from rdsmigrate.online.settings import DEFAULT_LAG_PROBE_S, StatusOptions
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import Selection

_PROBE_POLL_S = 0.02

_SUBSCRIPTION_STATES = {"i": "initializing", "d": "copying", "f": "copied", "s": "synchronized",
                        "r": "ready"}


class TableState(BaseModel):
    table: str
    state: str


class OnlineStatus(BaseModel):
    name: str
    phase: str
    recorded: bool
    """Whether the state record file was found (else the record kept on the subscription)."""
    subscription: bool
    worker_running: bool
    slot: bool
    slot_active: bool
    publication: bool
    lag_bytes: int | None
    lag_seconds: float | None
    lag_seconds_at_least: bool = False
    """The probe gave up (``StatusOptions.lag_probe_s``): the lag is at least ``lag_seconds``."""
    retained_wal_bytes: int | None
    apply_errors: int | None
    sync_errors: int | None
    tables: list[TableState]
    drift: list[str]
    frozen: bool
    warnings: list[str]

    @property
    def streaming(self) -> bool:
        return self.subscription and self.worker_running and self.slot_active

    def render(self, reporter: Reporter) -> None:
        def line(text: str) -> None:
            reporter.console.print(text, markup=False, highlight=False)

        lag = "?" if self.lag_bytes is None else human_bytes(self.lag_bytes)
        secs = "?" if self.lag_seconds is None else (
            f"{'more than ' if self.lag_seconds_at_least else ''}{self.lag_seconds:.2f} s")
        line(f"{self.name} ({self.phase}): "
             f"{'streaming' if self.streaming else 'NOT streaming'} (apply worker "
             f"{'running' if self.worker_running else 'stopped'}, slot "
             f"{'active' if self.slot_active else ('inactive' if self.slot else 'missing')})")
        line(f"lag: {lag}, {secs}; WAL held on the source: "
             f"{'?' if self.retained_wal_bytes is None else human_bytes(self.retained_wal_bytes)}")
        counts: dict[str, int] = {}
        for t in self.tables:
            counts[t.state] = counts.get(t.state, 0) + 1
        line("tables: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
        if self.apply_errors or self.sync_errors:
            line(f"apply errors: {self.apply_errors}, table sync errors: {self.sync_errors} "
                 "(the messages are in the target server's log, lines with 'logical replication')")
        line("schema: unchanged since the copy" if not self.drift
             else "schema CHANGED on the source since the copy (DDL is not replicated):")
        for d in self.drift:
            line(f"  {d}")
        if self.frozen:
            line("the source database is frozen (new sessions read-only)")
        for w in self.warnings:
            reporter.warn(w)


def locate(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], state_dir: Path,
           target: Endpoint) -> tuple[state.OnlineState, bool]:
    """The migration's record, read from the target itself (:mod:`.state`), so any machine
    with an empty state directory sees it. Returns it and whether it was found (always True:
    kept for the report's ``recorded`` field)."""
    record = state.latest(tgt)
    if record is not None:
        return record, True
    raise UserError(f"no online migration to {target.describe()} is recorded on it (no "
                    f"{catalog.TOOL_SCHEMA}.migration row, no rdsmigrate subscription): start one "
                    "with `rdsmigrate sync`")


def probe_lag(src: psycopg.Connection[Any], slot: str,
              limit_s: float = DEFAULT_LAG_PROBE_S) -> tuple[float, bool] | None:
    """Seconds until the slot's ``confirmed_flush_lsn`` passes the source's WAL insert position
    read at the start: what a change committed now waits before the target has it applied and
    flushed. Returns (seconds, gave_up), gave_up when ``limit_s`` passed first; None when the
    slot is missing or inactive (nothing is streaming, so there is no lag to time).

    An idle source is the one case the position is never confirmed: the insert position can sit
    just past a page header (at most 40 bytes), ahead of every record's end. So when the source
    has written nothing since the start, has flushed all but that header, and the walsender has
    sent all it flushed and had it confirmed, the lag is 0.
    """
    t0 = time.monotonic()
    start = src.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    assert start is not None
    while True:
        row = src.execute(
            """SELECT s.active, s.confirmed_flush_lsn >= %(lsn)s,
                      pg_current_wal_insert_lsn() = %(lsn)s
                      AND pg_wal_lsn_diff(%(lsn)s, pg_current_wal_flush_lsn()) <= 40
                      AND r.sent_lsn >= pg_current_wal_flush_lsn()
                      AND s.confirmed_flush_lsn >= r.sent_lsn
                 FROM pg_replication_slots s
                 LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
                WHERE s.slot_name = %(slot)s""", {"lsn": start[0], "slot": slot}).fetchone()
        elapsed = time.monotonic() - t0
        if row is None or not row[0]:
            return None
        if row[1] or row[2]:
            return round(elapsed, 3), False
        if elapsed >= limit_s:
            return round(elapsed, 3), True
        time.sleep(_PROBE_POLL_S)


def measure(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], record: state.OnlineState,
            *, recorded: bool, retained_warn_bytes: int,
            lag_probe_s: float = DEFAULT_LAG_PROBE_S) -> OnlineStatus:
    """Everything ``status`` shows. ``lag_probe_s`` 0 skips the timed lag probe (cutover only
    needs the bytes); lag_seconds is then None."""
    name = record.name
    probed = probe_lag(src, name, lag_probe_s) if lag_probe_s > 0 else None
    slot = src.execute(
        """SELECT s.active, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::int8,
                  pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::int8
             FROM pg_replication_slots s WHERE s.slot_name = %s""", [name]).fetchone()
    publication = src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone()
    sub = tgt.execute(
        "SELECT s.oid FROM pg_subscription s WHERE s.subname = %s AND s.subdbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())", [name]).fetchone()
    worker = tgt.execute("SELECT pid FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL "
                         "AND pid IS NOT NULL", [name]).fetchone()
    apply_errors = sync_errors = None
    if sub and server_major(tgt.info.server_version) >= 15:
        errors = tgt.execute("SELECT apply_error_count, sync_error_count "
                             "FROM pg_stat_subscription_stats WHERE subid = %s", [sub[0]]).fetchone()
        if errors:
            apply_errors, sync_errors = int(errors[0]), int(errors[1])
    tables = [TableState(table=t, state=_SUBSCRIPTION_STATES.get(s, s)) for t, s in tgt.execute(
        """SELECT n.nspname || '.' || c.relname, r.srsubstate::text FROM pg_subscription_rel r
             JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE r.srsubid = %s ORDER BY 1""", [sub[0] if sub else 0]).fetchall()]
    lag_bytes = max(0, int(slot[1])) if slot and slot[1] is not None else None
    retained = int(slot[2]) if slot and slot[2] is not None else None
    drift: list[str] = []
    warnings: list[str] = []
    if record.fingerprint:
        selected = resolve(src, Selection(schemas=tuple(record.schemas),
                                          exclude_tables=tuple(record.exclude_tables)),
                           strict=False)
        drift = fingerprint.drift(record.fingerprint, fingerprint.take(src, selected))
    else:
        warnings.append("no schema fingerprint recorded: DDL changes cannot be detected")
    if retained is not None and retained > retained_warn_bytes:
        warnings.append(f"the slot {name} holds {human_bytes(retained)} of WAL on the source: it "
                        "grows until the target catches up or `rdsmigrate abort` drops the slot; "
                        "left alone it fills the source's disk")
    if worker is None and sub is not None:
        warnings.append("the apply worker is not running: the target server's log says why")
    return OnlineStatus(
        name=name, phase=record.phase, recorded=recorded, subscription=sub is not None,
        worker_running=worker is not None, slot=slot is not None, slot_active=bool(slot and slot[0]),
        publication=publication is not None, lag_bytes=lag_bytes,
        lag_seconds=probed[0] if probed else None, lag_seconds_at_least=bool(probed and probed[1]),
        retained_wal_bytes=retained, apply_errors=apply_errors, sync_errors=sync_errors,
        tables=tables, drift=drift, frozen=is_frozen(src), warnings=warnings,
    )


def run(source: Endpoint, target: Endpoint, options: StatusOptions) -> OnlineStatus:
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        record, recorded = locate(src, tgt, options.state_dir, target)
        return measure(src, tgt, record, recorded=recorded,
                       retained_warn_bytes=options.retained_wal_warn_bytes,
                       lag_probe_s=options.lag_probe_s)


def watch(source: Endpoint, target: Endpoint, options: StatusOptions, reporter: Reporter,
          *, as_json: bool, interval_s: float = 2.0) -> None:
    """Show the status again every ``interval_s`` until interrupted (one JSON line each with
    ``as_json``)."""
    while True:
        status = run(source, target, options)
        if as_json:
            sys.stdout.write(status.model_dump_json() + "\n")
            sys.stdout.flush()
        else:
            reporter.console.rule(time.strftime("%H:%M:%S"))
            status.render(reporter)
        time.sleep(interval_s)
