"""``rdsmigrate status``: how far behind the target is, and anything that would stop a cutover.

- lag in bytes: the source's current WAL insert position minus the slot's ``confirmed_flush_lsn`` (what
  the target has applied *and* flushed); in seconds: measured, not estimated (``probe_lag``): how
  long the target takes to confirm the WAL position the source had reached when asked. The
  walsender's ``replay_lag`` is no substitute: the subscriber reports "applied" as soon as it has
  applied what it was sent, so ``replay_lag`` reads NULL or about 0 under a steady load even
  while the target's flush, which the slot's position follows, trails by megabytes;
- retained WAL: the source WAL the slot keeps from being recycled (``restart_lsn``): a slot left
  behind by a stopped migration grows it until the source's disk is full; and the slot's safety
  (``wal_status``, ``safe_wal_size``): with a bounded ``max_slot_wal_keep_size`` the source
  invalidates a slot that falls too far behind ("lost"), after which this migration cannot
  continue;
- whether the apply worker still talks to the source: it replies to the walsender at least every
  ``wal_receiver_status_interval`` (the target's setting) while it runs, so a reply older than
  that plus ``REPLY_MARGIN_S`` (``pg_stat_replication.reply_time``) means a connection that is
  open but silent (a network partition, which PostgreSQL itself only ends after
  ``wal_sender_timeout``, 60 s by default) or a worker stuck behind a lock: not streaming;
- the apply worker (``pg_stat_subscription``), the subscription's ``enabled`` flag, and the error
  counts (``pg_stat_subscription_stats`` on PostgreSQL 15+); the error text itself is only in the
  target server's log, read where the target user may (``pg_ls_logdir``, ``pg_read_file``);
- per-table state (``pg_subscription_rel``): ``r`` (ready) for every table, as the copy did the
  initial load (``copy_data = false``);
- DDL drift: the source's schema fingerprint against the one recorded at copy time, except for a
  changed table whose columns the target now has too (the same DDL applied there: replication
  can apply again).

``status`` exits non-zero when the migration is unhealthy, with the codes of
:mod:`rdsmigrate.errors` (10 slot at risk or lost, 11 DDL drift, 12 apply errors since the last
``status``, 13 not streaming), so a script or a monitor can act on it. Apply errors are counted
from the previous ``status`` run (remembered in the state directory): a conflict that was
resolved stops failing the check, one that persists keeps adding errors. From a fresh state
directory (the runner's), errors count while the apply worker is down or restarted within the
last minute, as it does after each error.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, Field

from rdsmigrate.db import catalog
from rdsmigrate.db.connect import Endpoint, connect, redact_secrets
from rdsmigrate.db.selection import resolve
from rdsmigrate.db.tools import server_major
from rdsmigrate.errors import (
    EXIT_APPLY_ERRORS,
    EXIT_DDL_DRIFT,
    EXIT_NOT_STREAMING,
    EXIT_OK,
    EXIT_SLOT_AT_RISK,
    UserError,
)
from rdsmigrate.online import fingerprint, state
from rdsmigrate.online.freeze import is_frozen
from rdsmigrate.online.settings import (
    DEFAULT_LAG_PROBE_S,
    DEFAULT_SAFE_WAL_MIN_FRACTION,
    StatusOptions,
)
from rdsmigrate.progress import Reporter, human_bytes
from rdsmigrate.settings import Selection

_PROBE_POLL_S = 0.02

REPLY_MARGIN_S = 5.0
"""Added to ``wal_receiver_status_interval``: the worker wakes every second to reply, later on a
busy target."""

_SUBSCRIPTION_STATES = {"i": "initializing", "d": "copying", "f": "copied", "s": "synchronized",
                        "r": "ready"}


class TableState(BaseModel):
    table: str
    state: str


class Problem(BaseModel):
    """One reason ``status`` exits non-zero: its exit code, a stable kind, and what to do."""

    code: int
    kind: str
    message: str


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
    wal_status: str | None = None
    """The slot's ``wal_status``: reserved, extended, unreserved (at risk) or lost (invalidated)."""
    safe_wal_bytes: int | None = None
    """WAL the source may still write before the slot is at risk (``safe_wal_size``); None when
    ``max_slot_wal_keep_size`` is unbounded."""
    max_slot_wal_keep_bytes: int | None = None
    """The source's ``max_slot_wal_keep_size``; None when unbounded (-1)."""
    subscription_enabled: bool = True
    reply_age_s: float | None = None
    """Seconds since the source's walsender last heard from the apply worker."""
    reply_limit_s: float | None = None
    """The longest silence of a working apply worker (``wal_receiver_status_interval`` plus
    ``REPLY_MARGIN_S``); None when the target does not say."""
    worker_age_s: float | None = None
    """Seconds since the apply worker started: it restarts after every error."""
    apply_errors: int | None
    sync_errors: int | None
    new_apply_errors: int | None = None
    """Apply and table-sync errors since ``errors_since`` (the previous ``status``)."""
    errors_since: str | None = None
    error_log: list[str] = Field(default_factory=list)
    """The last apply worker errors from the target server's log, when the tool may read it."""
    last_error_at: str | None = None
    error_log_hint: str | None = None
    """Where to read the errors when the tool could not."""
    tables: list[TableState]
    drift: list[str]
    drift_applied: list[str] = Field(default_factory=list)
    """Tables changed on the source whose columns the target now has too (DDL applied there)."""
    frozen: bool
    warnings: list[str]
    problems: list[Problem] = Field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def streaming(self) -> bool:
        return (self.subscription and self.subscription_enabled and self.worker_running
                and self.slot_active and not self.silent)

    @property
    def silent(self) -> bool:
        """The apply worker has not replied for longer than it does while it works."""
        return (self.reply_age_s is not None and self.reply_limit_s is not None
                and self.reply_age_s > self.reply_limit_s)

    def render(self, reporter: Reporter) -> None:
        def line(text: str) -> None:
            reporter.console.print(text, markup=False, highlight=False)

        lag = "?" if self.lag_bytes is None else human_bytes(self.lag_bytes)
        secs = "?" if self.lag_seconds is None else (
            f"{'more than ' if self.lag_seconds_at_least else ''}{self.lag_seconds:.2f} s")
        line(f"{self.name} ({self.phase}): "
             f"{'streaming' if self.streaming else 'NOT streaming'} (apply worker "
             f"{'running' if self.worker_running else 'stopped'}, slot "
             f"{'active' if self.slot_active else ('inactive' if self.slot else 'missing')}"
             f"{f', no reply for {self.reply_age_s:.0f} s' if self.silent else ''})")
        held = ("lost (the slot was invalidated)" if self.wal_status == "lost" else
                "?" if self.retained_wal_bytes is None else human_bytes(self.retained_wal_bytes))
        safety = "" if self.wal_status in (None, "lost") else f" (slot {self.wal_status}" + (
            f", {human_bytes(self.safe_wal_bytes)} more before it is at risk, "
            f"max_slot_wal_keep_size {human_bytes(self.max_slot_wal_keep_bytes)})"
            if self.safe_wal_bytes is not None and self.max_slot_wal_keep_bytes is not None
            else ", max_slot_wal_keep_size unbounded)")
        line(f"lag: {lag}, {secs}; WAL held on the source: {held}{safety}")
        counts: dict[str, int] = {}
        for t in self.tables:
            counts[t.state] = counts.get(t.state, 0) + 1
        line("tables: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
        if self.apply_errors or self.sync_errors:
            since = (f"{self.new_apply_errors} new since the last status at {self.errors_since}"
                     if self.errors_since else f"{self.new_apply_errors} new")
            line(f"apply errors: {self.apply_errors}, table sync errors: {self.sync_errors} "
                 f"({since}; the last at {self.last_error_at or '?'})")
            for text in self.error_log:
                line(f"  {text}")
            if self.error_log_hint:
                line(f"  {self.error_log_hint}")
        line("schema: unchanged since the copy" if not self.drift
             else "schema CHANGED on the source since the copy (DDL is not replicated):")
        for d in self.drift:
            line(f"  {d}")
        for d in self.drift_applied:
            line(f"  {d}: changed on the source, and the target has the same columns now")
        if self.frozen:
            line("the source database is frozen (new sessions read-only)")
        for w in self.warnings:
            reporter.warn(w)
        for p in self.problems:
            reporter.warn(f"{p.kind} (exit {p.code}): {p.message}")


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
            lag_probe_s: float = DEFAULT_LAG_PROBE_S,
            safe_wal_min_fraction: float = DEFAULT_SAFE_WAL_MIN_FRACTION) -> OnlineStatus:
    """Everything ``status`` shows. ``lag_probe_s`` 0 skips the timed lag probe (cutover only
    needs the bytes); lag_seconds is then None."""
    name = record.name
    probed = probe_lag(src, name, lag_probe_s) if lag_probe_s > 0 else None
    # wal_status and safe_wal_size through to_jsonb: PostgreSQL 13+ only, and older sources
    # simply have none. max_slot_wal_keep_size is in MB, -1 for unbounded.
    slot = src.execute(
        """SELECT s.active, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::int8,
                  pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::int8,
                  to_jsonb(s) ->> 'wal_status', (to_jsonb(s) ->> 'safe_wal_size')::int8,
                  (SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size'),
                  (SELECT extract(epoch FROM now() - coalesce(r.reply_time, r.backend_start))
                     FROM pg_stat_replication r WHERE r.pid = s.active_pid)::float8
             FROM pg_replication_slots s WHERE s.slot_name = %s""", [name]).fetchone()
    publication = src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [name]).fetchone()
    sub = tgt.execute(
        "SELECT s.oid, s.subenabled FROM pg_subscription s WHERE s.subname = %s AND s.subdbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())", [name]).fetchone()
    interval = tgt.execute("SELECT setting::int FROM pg_settings "
                           "WHERE name = 'wal_receiver_status_interval'").fetchone()
    worker = tgt.execute(
        "SELECT s.pid, extract(epoch FROM now() - a.backend_start)::float8 "
        "FROM pg_stat_subscription s LEFT JOIN pg_stat_activity a ON a.pid = s.pid "
        "WHERE s.subname = %s AND s.relid IS NULL AND s.pid IS NOT NULL", [name]).fetchone()
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
    keep_mb = int(slot[5]) if slot and slot[5] is not None else -1
    drift: list[str] = []
    applied: list[str] = []
    warnings: list[str] = []
    if record.fingerprint:
        drift, applied = _drift(src, tgt, record)
    else:
        warnings.append("no schema fingerprint recorded: DDL changes cannot be detected")
    status = OnlineStatus(
        name=name, phase=record.phase, recorded=recorded, subscription=sub is not None,
        worker_running=worker is not None, slot=slot is not None, slot_active=bool(slot and slot[0]),
        publication=publication is not None, lag_bytes=lag_bytes,
        lag_seconds=probed[0] if probed else None, lag_seconds_at_least=bool(probed and probed[1]),
        retained_wal_bytes=retained, wal_status=slot[3] if slot else None,
        safe_wal_bytes=int(slot[4]) if slot and slot[4] is not None else None,
        max_slot_wal_keep_bytes=keep_mb * 1024 * 1024 if keep_mb >= 0 else None,
        subscription_enabled=bool(sub[1]) if sub else False,
        reply_age_s=float(slot[6]) if slot and slot[6] is not None else None,
        # 0 disables the worker's timed replies: then there is no bound to judge by.
        reply_limit_s=interval[0] + REPLY_MARGIN_S if interval and interval[0] > 0 else None,
        worker_age_s=float(worker[1]) if worker and worker[1] is not None else None,
        apply_errors=apply_errors, sync_errors=sync_errors, new_apply_errors=(
            None if apply_errors is None else apply_errors + (sync_errors or 0)),
        tables=tables, drift=drift, drift_applied=applied, frozen=is_frozen(src),
        warnings=warnings,
    )
    return _judge(status, retained_warn_bytes=retained_warn_bytes,
                  safe_wal_min_fraction=safe_wal_min_fraction)


def _drift(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any],
           record: state.OnlineState) -> tuple[list[str], list[str]]:
    """(drift, changes already applied on the target).

    The fix for DDL on the source is the same DDL on the target: the apply worker maps columns
    by name, so once the target has the source's columns it applies again. A changed table whose
    columns (names and types) are the same on both sides now is therefore no longer drift; its
    indexes or constraints may differ, which replication does not mind.
    """
    selected = resolve(src, Selection(schemas=tuple(record.schemas),
                                      exclude_tables=tuple(record.exclude_tables)), strict=False)
    current = fingerprint.take(src, selected)
    lines = fingerprint.drift(record.fingerprint, current)
    changed = sorted(n for n in record.fingerprint.keys() & current.keys()
                     if record.fingerprint[n] != current[n])
    if not changed:
        return lines, []
    on_source, on_target = _columns(src, changed), _columns(tgt, changed)
    applied = [n for n in changed if n in on_source and on_source[n] == on_target.get(n)]
    return [d for d in lines if d.split(":", 1)[0] not in applied], applied


_COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname,
       string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                  ORDER BY a.attname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname || '.' || c.relname = ANY(%s::text[])
 GROUP BY 1
"""


def _columns(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, str]:
    return {str(n): str(cols) for n, cols in conn.execute(_COLUMNS_SQL, [names]).fetchall()}


def _judge(status: OnlineStatus, *, retained_warn_bytes: int,
           safe_wal_min_fraction: float) -> OnlineStatus:
    """The problems that make ``status`` exit non-zero, most urgent first (see the module)."""
    name, problems = status.name, []
    retained, keep = status.retained_wal_bytes, status.max_slot_wal_keep_bytes
    if status.wal_status == "lost":
        problems.append(Problem(code=EXIT_SLOT_AT_RISK, kind="slot lost", message=(
            f"the source invalidated the slot {name} (wal_status lost: it removed WAL the "
            "target had not received, because the slot held more than max_slot_wal_keep_size); "
            "this migration cannot continue: `rdsmigrate abort`, then `rdsmigrate sync --replace` "
            "with a larger max_slot_wal_keep_size")))
    elif status.wal_status == "unreserved":
        problems.append(Problem(code=EXIT_SLOT_AT_RISK, kind="slot at risk", message=(
            f"the slot {name} holds more WAL than max_slot_wal_keep_size allows (wal_status "
            "unreserved): the source invalidates it at its next checkpoint unless the target "
            "catches up now; raise max_slot_wal_keep_size on the source (a reload, no restart) "
            "or let the target catch up")))
    elif (status.safe_wal_bytes is not None and keep is not None
          and status.safe_wal_bytes < keep * safe_wal_min_fraction):
        problems.append(Problem(code=EXIT_SLOT_AT_RISK, kind="slot at risk", message=(
            f"only {human_bytes(max(status.safe_wal_bytes, 0))} more WAL before the source may "
            f"invalidate the slot {name} (max_slot_wal_keep_size {human_bytes(keep)}, below "
            f"{safe_wal_min_fraction:.0%} left): the target is falling behind; raise "
            "max_slot_wal_keep_size on the source (a reload, no restart) or let it catch up")))
    elif keep is None and retained is not None and retained > retained_warn_bytes:
        problems.append(Problem(code=EXIT_SLOT_AT_RISK, kind="slot at risk", message=(
            f"the slot {name} holds {human_bytes(retained)} of WAL on the source, above "
            f"--warn-wal-mb, with max_slot_wal_keep_size unbounded: it grows until the target "
            "catches up or `rdsmigrate abort` drops the slot; left alone it fills the source's "
            "disk (a bounded max_slot_wal_keep_size protects the source)")))
    if status.drift:
        problems.append(Problem(code=EXIT_DDL_DRIFT, kind="DDL drift", message=(
            "the source's schema changed since the copy and logical replication does not carry "
            "DDL: " + "; ".join(status.drift) + ". " + DRIFT_FIX)))
    if status.new_apply_errors:
        problems.append(Problem(code=EXIT_APPLY_ERRORS, kind="apply errors", message=(
            f"the subscription's workers failed {status.new_apply_errors} time(s)"
            + (f" since {status.errors_since}" if status.errors_since else "")
            + ": they retry and fail again until the cause is fixed on the target (a row that "
            "conflicts with a replicated one: remove it there; a missing column: add it there)")))
    if not status.streaming:
        why = ("the subscription is disabled: ALTER SUBSCRIPTION "
               f"{name} ENABLE on the target" if status.subscription and not
               status.subscription_enabled else
               "the subscription is missing on the target" if not status.subscription else
               "the apply worker is not running: the target server's log says why"
               if not status.worker_running else
               f"the slot {name} is {'inactive' if status.slot else 'missing'} on the source"
               if not status.slot_active else
               f"no reply from the apply worker for {status.reply_age_s:.0f} s (it replies every "
               f"{(status.reply_limit_s or 0) - REPLY_MARGIN_S:.0f} s while it works): the "
               "connection between the servers is stalled (PostgreSQL reconnects after "
               "wal_sender_timeout / wal_receiver_timeout) or the worker waits for a lock on the "
               "target")
        problems.append(Problem(code=EXIT_NOT_STREAMING, kind="not streaming", message=why))
    status.problems = problems
    status.exit_code = problems[0].code if problems else EXIT_OK
    return status


DRIFT_FIX = ("Apply the same DDL on the target (the apply worker then resumes by itself, and "
             "status and cutover accept a changed table once the target has its columns); a "
             "table created since the copy is not replicated: leave it out, or `rdsmigrate "
             "abort` and sync again")


def run(source: Endpoint, target: Endpoint, options: StatusOptions) -> OnlineStatus:
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        record, recorded = locate(src, tgt, options.state_dir, target)
        status = measure(src, tgt, record, recorded=recorded,
                         retained_warn_bytes=options.retained_wal_warn_bytes,
                         lag_probe_s=options.lag_probe_s,
                         safe_wal_min_fraction=options.safe_wal_min_fraction)
        if status.apply_errors is None:
            return status
        total = status.apply_errors + (status.sync_errors or 0)
        seen = _ErrorsSeen.load(options.state_dir, target, status.name)
        if seen is not None and seen.count <= total:
            status.new_apply_errors, status.errors_since = total - seen.count, seen.at
        else:
            # No earlier count (a fresh state directory, as on the runner): the errors are
            # current while the worker is down or has just restarted (it restarts after each).
            age = status.worker_age_s
            current = not status.worker_running or (age is not None and age < RECENT_RESTART_S)
            status.new_apply_errors = total if current else 0
        _ErrorsSeen(subscription=status.name, count=total,
                    at=time.strftime("%Y-%m-%d %H:%M:%S %Z")).save(options.state_dir, target)
        if total:
            status.error_log, status.last_error_at, status.error_log_hint = server_log_errors(tgt)
        return _judge(status, retained_warn_bytes=options.retained_wal_warn_bytes,
                      safe_wal_min_fraction=options.safe_wal_min_fraction)


# The apply worker restarts wal_retrieve_retry_interval (5 s) after an error: one that has run
# longer than this has not failed lately.
RECENT_RESTART_S = 60.0


class _ErrorsSeen(BaseModel):
    """The error count the previous ``status`` reported: what "new" errors are new since."""

    subscription: str
    count: int
    at: str

    @staticmethod
    def _path(state_dir: Path, target: Endpoint) -> Path:
        record = state.location(state_dir, target)
        return record.with_name(record.name.replace("online-", "status-errors-", 1))

    @classmethod
    def load(cls, state_dir: Path, target: Endpoint, subscription: str) -> _ErrorsSeen | None:
        try:
            seen = cls.model_validate_json(cls._path(state_dir, target).read_text())
        except (OSError, ValueError):
            return None
        return seen if seen.subscription == subscription else None

    def save(self, state_dir: Path, target: Endpoint) -> None:
        path = self._path(state_dir, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json())


# "2026-12-01 22:50:01.123 UTC [1234] ERROR:  ..." with the default log_line_prefix ('%m [%p] ').
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Z]{2,5})?)")
_LOG_TAIL_BYTES = 256 * 1024


def server_log_errors(tgt: psycopg.Connection[Any]) -> tuple[list[str], str | None, str | None]:
    """(the last apply worker errors from the target server's log, the time of the last one, or
    where to read them when this role may not).

    Reading the log takes ``pg_ls_logdir`` (superuser or pg_monitor) and ``pg_read_file``
    (superuser or pg_read_server_files), and a log collector writing files; on RDS neither is
    granted, and the log is read through the RDS API instead.
    """
    try:
        files = tgt.execute("SELECT name, size FROM pg_ls_logdir() ORDER BY modification DESC "
                            "LIMIT 2").fetchall()
        texts = []
        for name, size in reversed(files):
            row = tgt.execute(
                "SELECT pg_read_file(current_setting('log_directory') || '/' || %s, %s, %s)",
                [name, max(0, int(size) - _LOG_TAIL_BYTES), _LOG_TAIL_BYTES]).fetchone()
            texts.append(str(row[0]) if row else "")
    except psycopg.Error:
        on_rds = tgt.execute("SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'rds.%%')"
                             ).fetchone()
        where = ("on RDS: aws rds describe-db-log-files --db-instance-identifier <target "
                 "instance>, then aws rds download-db-log-file-portion --db-instance-identifier "
                 "<target instance> --log-file-name <newest> --output text"
                 if on_rds and on_rds[0] else
                 "in the target server's log; this role may not read it (it needs pg_monitor and "
                 "pg_read_server_files, and logging_collector = on)")
        return [], None, ("the error text: lines with 'logical replication' and the ERROR and "
                          f"DETAIL before them, {where}")
    lines = "\n".join(texts).splitlines()
    errors: list[str] = []
    for i, line in enumerate(lines):
        if "ERROR:" not in line:
            continue
        after = lines[i + 1:i + 4]
        if "logical replication" in line or any(
                "replication origin" in a or "logical replication" in a for a in after):
            detail = next((a.split("DETAIL:", 1)[1].strip() for a in after if "DETAIL:" in a), "")
            errors.append(redact_secrets(line.strip() + (f" ({detail})" if detail else "")))
    if not errors:
        return [], None, "no apply worker error is left in the newest log files of the target"
    match = _LOG_TIME.match(errors[-1])
    return errors[-3:], match.group(1) if match else None, None


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
