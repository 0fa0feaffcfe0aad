"""The copy's worker processes, and the parent side that feeds, watches and stops them.

Workers are processes, not threads: moving a row through psycopg costs ~0.65 µs of Python, and
with threads all of it queues on one interpreter lock. Measured on 2 cores, two tables of 1 M
rows each: 2 threads 2.75 s, 2 processes 1.6 s, 2 psql pipes 1.45 s.

Each worker holds one source session inside the exported snapshot and one target session, takes
unit numbers from a queue, and reports progress, completion and errors as small tuples. The parent
records finished tables, drives the progress display, and on Ctrl-C or an error asks both servers
to cancel the workers' queries (``pg_cancel_backend``), so the servers stop working too.

No worker outlives the command: each watches a pipe whose only writing end the command holds, and
exits at once when it reads end-of-file, which the kernel delivers however the command ended
(SIGKILL included); its sessions close with it, so no "idle in transaction" session is left
holding the snapshot's xmin on the source. Not ``PR_SET_PDEATHSIG``, nor ``getppid()``: a
worker's parent is the forkserver, not the command, and the death signal follows the *thread*
that forked.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.synchronize import Event
from typing import Any

import psycopg

from rdsmigrate.copy import snapshot, stream
from rdsmigrate.copy.plan import Unit
from rdsmigrate.copy.stream import Stopped, copy_unit
from rdsmigrate.db.connect import Endpoint, connect

PROGRESS = "progress"
DONE = "done"
ERROR = "error"
PIDS = "pids"

BATCH_UNITS = 64
BATCH_SECONDS = 0.5
"""A batch of small tables is committed after this many tables or seconds, whichever first:
few enough locks held, and finished tables reported (and their index builds started) soon."""


def _exit_with_command(alive: Any) -> None:
    """Exit this process as soon as the command's end of ``alive`` is closed (see above)."""
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                alive.recv()
        os._exit(1)

    threading.Thread(target=watch, name="watch-command", daemon=True).start()


def worker_main(source: Endpoint, target: Endpoint, snapshot_id: str, work: Any, events: Any,
                stop: Event, go: Event, freeze_min_bytes: int, alive: Any) -> None:
    """Entry point of a worker process: ready its sessions, wait for ``go``, then take units.

    Each unit arrives on ``work`` with its number and whether it may use binary, not as an
    index into a list every worker holds: with 10,000 tables that list was 15 MiB in each."""
    # Signals to the whole process group (Ctrl-C, a hangup) are the command's to handle: it
    # cancels the workers' queries and stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _exit_with_command(alive)
    current = -1
    try:
        # The target session autocommits: each unit is one COPY, committed (or not) whole.
        with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            # psycopg leaves libpq non-blocking; then a write to a slower target never waits but
            # grows libpq's send buffer without bound (254 MiB peak measured on 1.1 GB). Blocking
            # writes bound memory to about one write, and cost nothing: a worker is a process.
            src.pgconn.nonblocking = 0
            tgt.pgconn.nonblocking = 0
            events.put((PIDS, src.info.backend_pid, tgt.info.backend_pid))
            snapshot.import_into(src, snapshot_id)
            # Names in text output (regclass, regproc ...) come out fully qualified and are
            # read back exactly, whatever search_path either database sets.
            src.execute("SET LOCAL search_path = ''")
            tgt.execute("SET search_path = ''")
            # The parent releases the workers once the target's tables exist.
            while not go.wait(timeout=0.5):
                if stop.is_set():
                    return
            batch = _Batch()
            while not stop.is_set():
                item = work.get()
                if item is None:
                    break
                index, unit, binary = item
                current = index
                batched = stream.batchable(unit, freeze_min_bytes)
                if not batched:
                    batch.commit(tgt, events)
                done = _copy_one(src, tgt, unit, index, binary, events, stop, batched)
                if batched:
                    batch.add(done)
                    if batch.full():
                        batch.commit(tgt, events)
                else:
                    events.put(done)
                current = -1
            if not stop.is_set():
                batch.commit(tgt, events)
    except Stopped:
        return
    except psycopg.errors.QueryCanceled:
        if not stop.is_set():
            events.put((ERROR, current, "user", "a query of the copy was cancelled on a server"))
    except BaseException as exc:
        if stop.is_set():
            return
        from rdsmigrate.errors import UserError

        kind = "user" if isinstance(exc, UserError | psycopg.Error) else "internal"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        events.put((ERROR, current, kind, f"{type(exc).__name__}: {first}" if kind == "internal" else first))


@dataclass
class _Batch:
    """Small tables loaded in the target's open transaction, reported once it commits."""

    done: list[tuple[Any, ...]] = field(default_factory=list)
    started: float = 0.0

    def add(self, event: tuple[Any, ...]) -> None:
        if not self.done:
            self.started = time.monotonic()
        self.done.append(event)

    def full(self) -> bool:
        return (len(self.done) >= BATCH_UNITS
                or time.monotonic() - self.started >= BATCH_SECONDS)

    def commit(self, tgt: psycopg.Connection[Any], events: Any) -> None:
        stream.commit(tgt)
        for event in self.done:
            events.put(event)
        self.done = []


def _copy_one(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], unit: Unit, index: int,
              binary: bool, events: Any, stop: Event, batched: bool) -> tuple[Any, ...]:
    """Copy one unit; returns its DONE event, to send once the unit is committed."""
    started = time.monotonic()
    moved = [0]

    def progress(rows: int, nbytes: int) -> bool:
        moved[0] += nbytes
        events.put((PROGRESS, index, rows, nbytes))
        return not stop.is_set()

    rows = copy_unit(src, tgt, unit, binary, progress, batched=batched)
    return (DONE, index, rows, moved[0], time.monotonic() - started)


def _context() -> Any:
    """A forkserver that has imported only this module: workers start in milliseconds, share its
    pages, and never import the CLI's modules (with :func:`_main_not_rerun`: without it every
    start re-ran the console script, typer, rich and pydantic, ~0.25 s and ~15 MiB a worker).
    Forking the parent itself is not an option: it holds open database sessions and a
    replication connection."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """While workers start: hide the command's ``__main__`` file from multiprocessing.

    A started process re-runs the parent's main script (as ``__mp_main__``) so that functions
    defined there can be unpickled; for the ``rdsmigrate`` console script that imports the whole
    CLI (typer, rich, pydantic: 478 modules, about 15 MiB and a quarter of a second a worker).
    The workers need nothing from it: their entry point lives in this module. multiprocessing
    reads the path when each process starts, in this thread."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


@dataclass
class TableTotals:
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    pending: int = 0


@dataclass
class Pool:
    """Parent side: starts the workers, relays their events, cancels them."""

    source: Endpoint
    target: Endpoint
    snapshot_id: str
    units: list[Unit]
    binary_ok: list[bool]
    jobs: int
    on_progress: Callable[[int, int, int], None]
    """(unit index, rows, bytes) as data moves."""
    on_unit_done: Callable[[int, int, int, float], None]
    """(unit index, rows, bytes, seconds) once a unit is committed on the target."""
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    _pids: list[int] = field(default_factory=list)
    _stopped: bool = False
    _procs: list[Any] = field(default_factory=list)
    _work: Any = None
    _events: Any = None
    _stop: Any = None
    _go: Any = None
    _alive: Any = None
    """The command's (writing) end of the pipe the workers watch; never written to."""

    def prepare(self) -> None:
        """Start the process server the workers will be forked from (a Python start, about
        0.2 s), ahead of :meth:`start`."""
        if not self.units:
            return
        _context()
        with _main_not_rerun():
            forkserver.ensure_running()

    def start(self) -> None:
        """Spawn the workers; they connect and import the snapshot, then wait for :meth:`go`."""
        if not self.units:
            return
        ctx = _context()
        self._work, self._events = ctx.Queue(), ctx.Queue()
        self._stop, self._go = ctx.Event(), ctx.Event()
        watched, self._alive = ctx.Pipe(duplex=False)
        for index, unit in enumerate(self.units):
            self._work.put((index, unit, self.binary_ok[index]))
        count = min(self.jobs, len(self.units))
        for _ in range(count):
            self._work.put(None)
        self._procs = [
            ctx.Process(target=worker_main, name=f"rdsmigrate-copy-{i}", daemon=True,
                        args=(self.source, self.target, self.snapshot_id, self._work,
                              self._events, self._stop, self._go, stream.FREEZE_MIN_BYTES,
                              watched))
            for i in range(count)]
        with _main_not_rerun():
            for proc in self._procs:
                proc.start()
        watched.close()  # the workers hold their own copies; the command keeps only its end

    def go(self) -> None:
        """Release the workers and relay their events until every unit is done or one fails."""
        if not self.units:
            return
        self._go.set()
        try:
            self._relay(self._procs, self._events, self._stop)
        except BaseException:
            self._cancel(self._stop)
            raise

    def close(self) -> None:
        """Stop whatever still runs (after an error or Ctrl-C) and release the queues."""
        if not self.units or self._work is None:  # never started (the schema dump failed)
            return
        if any(p.is_alive() for p in self._procs):
            self._cancel(self._stop)
        deadline = time.monotonic() + 10
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            # A worker cannot exit while its last progress events sit unread in a full pipe.
            with contextlib.suppress(queue.Empty, OSError, EOFError):
                self._events.get(timeout=0.1)
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        for q in (self._work, self._events):
            q.close()
            q.cancel_join_thread()
        self._alive.close()

    def _relay(self, procs: list[Any], events: Any, stop: Event) -> None:
        done = 0
        while done < len(self.units):
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    self.errors.append((-1, "internal", f"worker {dead[0].name} died "
                                        f"(exit code {dead[0].exitcode})"))
                if self.errors or all(not p.is_alive() for p in procs):
                    break
                continue
            kind = event[0]
            if kind == PROGRESS:
                self.on_progress(event[1], event[2], event[3])
            elif kind == DONE:
                self.on_unit_done(event[1], event[2], event[3], event[4])
                done += 1
            elif kind == PIDS:
                self._pids.extend(event[1:])
            elif kind == ERROR:
                self.errors.append((event[1], event[2], event[3]))
                break
        if self.errors:
            self._cancel(stop)

    def _cancel(self, stop: Event) -> None:
        """Stop every worker and cancel their statements on both servers."""
        if self._stopped:
            return
        self._stopped = True
        stop.set()
        for ep in (self.source, self.target):
            try:
                with connect(ep, autocommit=True) as admin:
                    admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                                  "WHERE pid = ANY(%s)", [self._pids])
            except Exception:
                pass


def totals_by_table(units: list[Unit]) -> dict[str, TableTotals]:
    totals: dict[str, TableTotals] = defaultdict(TableTotals)
    for unit in units:
        totals[unit.table.qualified].pending += 1
    return totals
