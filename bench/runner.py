"""One benchmark: clusters up, dataset built, contenders timed in turns, clusters down.

Turns (A B C A B C ...) rather than blocks (A A A B B B) so that whatever drifts during the
benchmark (page cache, the machine's other load) is spread over every contender alike. Before
each run, outside the timing: the run's target database is dropped and recreated and both
clusters take a CHECKPOINT, so no run pays for the dirty pages of the one before. Before the
first round, one untimed warm-up copy (``_warm_up``) lets the clusters create their WAL segments.
After each run, outside the timing: the independent check (``bench.check``); a run that fails it, or whose
program fails or times out, is reported as failed and left out of every figure.

Each contender writes its own target database (``t_<key>``), so ``rdsmigrate verify`` can read
what ``rdsmigrate copy`` wrote in the same round. Everything started here is removed in a
``finally``: clusters, work directories, and any program still running (Ctrl-C, a timeout, an
error).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import check, dataset, manytables, report
from bench.contenders import (
    JOBS,
    Contender,
    Context,
    all_contenders,
    pgcopydb_version,
    run_raw_limit,
)
from bench.measure import Processes, RunFailed, measured
from rdsmigrate.localpg import LocalCluster, find_bindir

# What the dataset makes: the numbers that decide the figures, repeated in every report.
NOTES = [
    "peak RSS is the largest sum of VmRSS over the contender's process tree in one 50 ms "
    "sample (shared pages counted once per process: an upper bound); peak PSS splits shared "
    "pages between processes (the tree's real share); servers are not included",
    "CPU s is the median user+system CPU of the contender's own processes / of both servers; "
    "others is CPU used meanwhile by processes outside the benchmark (a shared machine)",
    "clusters run with fsync, synchronous_commit and full_page_writes off (--no-durable, "
    "disposable data): the figures measure CPU and memory bandwidth, not disk flushes",
    "the raw limit copies rows only (no sequence values); the other contenders copy everything",
]
DURABLE_NOTE = ("clusters run durable, as an RDS instance does (fsync, synchronous_commit and "
                "full_page_writes on, shared_buffers 512MB, wal_level logical): the figures "
                "include disk flushes and full-page images")
TABLES_NOTE = ("many-tables dataset: the raw limit (a psql pipe per table) and pg_dump -Z0 are "
               "not run (a process pair per table measures process starts, and compression "
               "is irrelevant at 100 rows a table); rdsmigrate sync is timed with the cutover "
               "that follows it, on an idle source")


def settings_note(durable: bool) -> str:
    return DURABLE_NOTE if durable else NOTES[2]


@dataclass(frozen=True)
class Options:
    scale: int = 40
    payments_rows: int | None = None
    """None: 50,000 per scale unit (2 M at scale 40)."""
    rounds: int = 3
    only: tuple[str, ...] = ()
    timeout: float = 1800.0
    """Seconds one run may take before it is killed and reported as failed."""
    notes: tuple[str, ...] = ()
    """The operator's words about this run's conditions, printed and kept with the figures."""
    durable: bool = True
    """fsync, synchronous_commit and full_page_writes on (RDS-like); False for the disposable
    defaults of the test clusters."""
    tables: int | None = None
    """None: the pgbench + payments dataset; N: the many-tables dataset with N small tables."""


def select(only: tuple[str, ...], many_tables: bool = False) -> list[Contender]:
    """The contenders ``--only`` names, in running order; ValueError says what is wrong."""
    contenders = all_contenders(many_tables)
    keys = [c.key for c in contenders]
    unknown = [k for k in only if k not in keys]
    if unknown:
        raise ValueError(f"unknown contender {', '.join(unknown)} (choose from "
                         f"{', '.join(keys)})")
    chosen = [c for c in contenders if not only or c.key in only]
    if any(not (c.writes_target or c.empty_target) for c in chosen) and \
            not any(c.writes_target for c in chosen):
        raise ValueError("verify reads what another contender copied in the same round; add "
                         "one (e.g. --only copy,verify)")
    return chosen


@dataclass(frozen=True)
class Prepared:
    """Both clusters up and the dataset built on the source: what every benchmark mode starts
    from."""

    source: LocalCluster
    target: LocalCluster
    inventory: check.Inventory
    size: int
    payments_rows: int
    settings: dict[str, dict[str, str]]
    workroot: Path
    started: datetime

    def machine(self) -> dict[str, Any]:
        return {**report.machine_facts(), "postgresql": self.settings["effective"].get(
            "server_version", "?"), "pgcopydb": pgcopydb_version()}

    def dataset(self, scale: int, many_tables: int | None = None) -> dict[str, Any]:
        rows = self.inventory.rows
        return {"scale": scale, "payments_rows": self.payments_rows, "many_tables": many_tables,
                "database_bytes": self.size, "database_mb": round(self.size / 1e6, 1),
                "total_rows": sum(rows.values()), "table_count": len(rows),
                # 10,000 row counts would drown the report: only the pgbench dataset lists them.
                "tables": rows if many_tables is None else {},
                "indexes": self.inventory.indexes, "constraints": self.inventory.constraints}


@contextlib.contextmanager
def prepared(scale: int, payments_rows: int | None, console: Console,
             durable: bool = True, tables: int | None = None) -> Iterator[Prepared]:
    """Start both clusters and build the dataset (pgbench + payments, or ``tables`` small tables);
    stop and remove everything on the way out, error and Ctrl-C included."""
    rows = payments_rows if payments_rows is not None else dataset.PAYMENTS_PER_SCALE * scale
    bindir = find_bindir()
    workroot = Path(tempfile.mkdtemp(prefix="rdsmigrate-bench-"))
    clusters: list[LocalCluster] = []
    started = datetime.now(UTC)
    try:
        more = manytables.SETTINGS if tables is not None else None
        source, target = dataset.start_clusters(bindir, durable, more)
        clusters = [source, target]
        what = (f"{tables:,} small tables" if tables is not None
                else f"scale {scale} ({rows:,} payments)")
        console.print(f"clusters: PostgreSQL from {bindir}, source :{source.port}, "
                      f"target :{target.port}; building {what}...")
        t0 = time.monotonic()
        if tables is not None:
            dataset.build_tables(source, tables)
        else:
            dataset.build(source, scale, rows)
        inventory = check.inventory(source.dsn(dataset.DBNAME))
        size = dataset.database_bytes(source)
        console.print(f"dataset: {size / 1e6:.0f} MB, {sum(inventory.rows.values()):,} rows in "
                      f"{len(inventory.rows)} tables, {inventory.indexes} indexes, "
                      f"{inventory.constraints} constraints (built in "
                      f"{time.monotonic() - t0:.0f} s)")
        settings = {"configured": dataset.configured_settings(durable, more),
                    "effective": dataset.settings_of(source)}
        if settings["effective"] != dataset.settings_of(target):
            raise RuntimeError("the two clusters' settings differ")
        if tables is None:
            # The many-tables dataset writes little WAL per run: no warm-up (the raw limit's
            # pipe per table would take longer than the runs it prepares).
            _warm_up(source, target, workroot)
        yield Prepared(source, target, inventory, size, rows, settings, workroot, started)
    finally:
        dataset.stop_all(clusters)
        shutil.rmtree(workroot, ignore_errors=True)


def _warm_up(source: LocalCluster, target: LocalCluster, workroot: Path) -> None:
    """One untimed copy by the raw limit into a throwaway database, then dropped.

    A fresh cluster creates (and zero-fills) a new WAL segment for every 16 MB written until it
    can recycle old ones: the first contender of round 1 paid about 5 s more server CPU than the
    same contender in later rounds, whichever it was. After this run every timed run recycles.
    """
    warm = "t_warmup"
    dataset.recreate(target, warm)
    workdir = Path(tempfile.mkdtemp(prefix="warmup-", dir=workroot))
    procs = Processes(dataset.tool_env(source), time.monotonic() + 1800)
    try:
        run_raw_limit(Context(source=source, target=target, target_db=warm, workdir=workdir),
                      procs)
    finally:
        procs.kill_all()
        dataset.drop(target, warm)
        shutil.rmtree(workdir, ignore_errors=True)


def run(options: Options, console: Console) -> dict[str, Any]:
    many = options.tables is not None
    contenders = select(options.only, many)
    with prepared(options.scale, options.payments_rows, console, options.durable,
                  options.tables) as ready:
        source, target, inventory = ready.source, ready.target, ready.inventory
        runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in contenders}
        for round_no in range(1, options.rounds + 1):
            copied_by: str | None = None
            for contender in contenders:
                if contender.unavailable:
                    continue
                target_db = (f"t_{contender.key}" if contender.writes_target or contender.empty_target
                             else (copied_by or ""))
                result = _one_run(contender, round_no, source, target, target_db, inventory,
                                  ready.workroot, options.timeout)
                runs[contender.key].append(result)
                if contender.writes_target and result["ok"] and copied_by is None:
                    copied_by = target_db  # verify reads the first good copy of the round
                _say(console, contender, result)
        result = {
            "format": 1,
            "started": ready.started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": ready.machine(),
            "settings": ready.settings,
            "options": {**{k: v for k, v in asdict(options).items() if k != "notes"},
                        "only": list(options.only), "payments_rows": ready.payments_rows,
                        "jobs": JOBS},
            "dataset": ready.dataset(options.scale, options.tables),
            "contenders": [
                {"key": c.key, "label": c.label, "command": c.command,
                 "unavailable": c.unavailable, "runs": runs[c.key],
                 "summary": report.summarize(runs[c.key], ready.size)}
                for c in contenders],
            "notes": [*options.notes, *NOTES[:2], settings_note(options.durable), *NOTES[3:],
                      *([TABLES_NOTE] if many else [])],
        }
        report.add_ratios(result["contenders"])
        return result


def _say(console: Console, contender: Contender, result: dict[str, Any]) -> None:
    if result["ok"]:
        console.print(f"  round {result['round']} {contender.label}: {result['seconds']:.2f} s",
                      markup=False)
    else:
        console.print(f"  round {result['round']} {contender.label}: FAILED: {result['error']}",
                      markup=False)


def _one_run(contender: Contender, round_no: int, source: LocalCluster, target: LocalCluster,
             target_db: str, inventory: check.Inventory, workroot: Path,
             timeout: float) -> dict[str, Any]:
    result: dict[str, Any] = {"round": round_no, "ok": False, "seconds": None, "error": None}
    if not target_db:
        result["error"] = "no contender of this round left a verified copy to read"
        return result
    if contender.writes_target or contender.empty_target:
        dataset.recreate(target, target_db)
    dataset.checkpoint(source, target)
    workdir = Path(tempfile.mkdtemp(prefix=f"{contender.key}-", dir=workroot))
    ctx = Context(source=source, target=target, target_db=target_db, workdir=workdir)
    procs = Processes(dataset.tool_env(source), time.monotonic() + timeout)
    try:
        with measured([dataset.postmaster_pid(source), dataset.postmaster_pid(target)]) as usage:
            details = contender.run(ctx, procs)
        result.update(details)
        result["usage"] = asdict(usage)
        if contender.writes_target:
            problems = check.differences(inventory, check.inventory(target.dsn(target_db)))
        elif contender.empty_target:
            after = check.inventory(target.dsn(target_db))
            problems = [] if not after.rows and not after.indexes else [
                f"{contender.label} wrote to the target ({len(after.rows)} tables)"]
        elif details.get("tables") != len(inventory.rows):
            problems = [f"verify compared {details.get('tables')} tables, the source has "
                        f"{len(inventory.rows)}"]
        else:
            problems = []
        if problems:
            result["error"] = "independent check failed: " + "; ".join(problems[:5])
        else:
            result["ok"], result["seconds"] = True, round(usage.seconds, 3)
    except RunFailed as exc:
        result["error"] = str(exc)
    finally:
        procs.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return result
