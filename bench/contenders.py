"""The contenders: each one a way a user would move the database, run as external programs.

Every contender goes through public command lines only (``rdsmigrate``, ``pg_dump``,
``pg_restore``, ``psql``, ``pgcopydb``), so the benchmark measures what a user gets, start-up
and all, and none of it can lean on the engine's internals. Each run gets an empty target
database and its own work directory; passwords travel in ``PGPASSWORD`` (both clusters share
one), never on a command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from bench.dataset import DBNAME, connect, program
from bench.measure import Processes, RunFailed
from rdsmigrate.localpg import LocalCluster

JOBS = 2


@dataclass(frozen=True)
class Context:
    """What one run works on: the source ``bench`` database and ``target_db`` on the target."""

    source: LocalCluster
    target: LocalCluster
    target_db: str
    workdir: Path


Phases = dict[str, float]
RunFn = Callable[[Context, Processes], dict[str, Any]]


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    command: str
    """The command line as a user would type it, for the report."""
    run: RunFn
    """Does the work; returns details for the report (phases, the tool's own figures)."""
    writes_target: bool = True
    """False for ``verify``: it reads a target another contender wrote, and is checked by what it
    says, not by the target's contents."""
    unavailable: str | None = None
    """Why it cannot run on this machine; None when it can."""
    empty_target: bool = False
    """True for ``preflight``: it reads a fresh, empty target and must leave it so."""


def conninfo(cluster: LocalCluster, dbname: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} dbname={dbname} user=postgres sslmode=disable"


def _conn_args(cluster: LocalCluster) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]


def rdsmigrate_program() -> str:
    """The installed ``rdsmigrate`` console script of the interpreter running the benchmark."""
    beside = Path(sys.executable).parent / "rdsmigrate"
    found = str(beside) if beside.exists() else shutil.which("rdsmigrate")
    if found is None:
        raise RuntimeError("the rdsmigrate command is not installed: run `make bench`, which "
                           "installs the package into .venv")
    return found


def timed(phases: Phases, name: str, started: float) -> float:
    now = time.monotonic()
    phases[name] = round(now - started, 3)
    return now


def run_rdsmigrate_copy(ctx: Context, procs: Processes) -> dict[str, Any]:
    report = ctx.workdir / "copy-report.json"
    procs.run([rdsmigrate_program(), "copy", "-s", conninfo(ctx.source, DBNAME),
               "-t", conninfo(ctx.target, ctx.target_db), "--jobs", str(JOBS), "--quiet",
               "--state-dir", str(ctx.workdir / "state"), "--report", str(report)],
              "rdsmigrate copy")
    data = json.loads(report.read_text())
    return {"phases": data.get("phases", {}), "tool_seconds": data.get("seconds"),
            "tool_bytes": data.get("bytes")}


def tool_result(out: str | bytes) -> dict[str, Any]:
    """The ``result`` of an ``rdsmigrate --json`` envelope (or the bare result of a version
    that printed no envelope)."""
    data: dict[str, Any] = json.loads(out)
    inner = data.get("result") if "command" in data and "ok" in data else data
    return inner if isinstance(inner, dict) else {}


def run_rdsmigrate_preflight(ctx: Context, procs: Processes) -> dict[str, Any]:
    proc = procs.start([rdsmigrate_program(), "preflight", "-s", conninfo(ctx.source, DBNAME),
                        "-t", conninfo(ctx.target, ctx.target_db), "--json"],
                       stdout=subprocess.PIPE)
    data = tool_result(procs.wait(proc, "rdsmigrate preflight"))
    return {"blockers": len(data.get("blockers", []))}


def run_rdsmigrate_sync_cutover(ctx: Context, procs: Processes) -> dict[str, Any]:
    """``sync`` until streaming, then ``cutover`` (counts), then the source is unfrozen again
    (outside the tool's figures, inside the run) so the next contender can read it."""
    phases: Phases = {}
    t = time.monotonic()
    state = str(ctx.workdir / "state")
    proc = procs.start([rdsmigrate_program(), "sync", "-s", conninfo(ctx.source, DBNAME),
                        "-t", conninfo(ctx.target, ctx.target_db), "--jobs", str(JOBS),
                        "--quiet", "--json", "--state-dir", state], stdout=subprocess.PIPE)
    procs.wait(proc, "rdsmigrate sync")
    t = timed(phases, "sync", t)
    proc = procs.start([rdsmigrate_program(), "cutover", "-s", conninfo(ctx.source, DBNAME),
                        "-t", conninfo(ctx.target, ctx.target_db), "--jobs", str(JOBS),
                        "--quiet", "--json", "--state-dir", state], stdout=subprocess.PIPE)
    data = tool_result(procs.wait(proc, "rdsmigrate cutover"))
    timed(phases, "cutover", t)
    with connect(ctx.source) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
            sql.Identifier(DBNAME)))
    return {"phases": phases, "write_downtime_s": data.get("write_downtime_s")}


def run_rdsmigrate_verify(ctx: Context, procs: Processes) -> dict[str, Any]:
    proc = procs.start([rdsmigrate_program(), "verify", "-s", conninfo(ctx.source, DBNAME),
                        "-t", conninfo(ctx.target, ctx.target_db), "--jobs", str(JOBS),
                        "--json", "--quiet"], stdout=subprocess.PIPE)
    try:
        out = procs.wait(proc, "rdsmigrate verify")
    except RunFailed:
        if proc.returncode == 1:
            raise RunFailed("rdsmigrate verify found differences on a target that the "
                            "independent check had passed") from None
        raise
    data = tool_result(out)
    if data.get("identical") is not True:
        raise RunFailed("rdsmigrate verify exited 0 without saying the databases are identical")
    return {"tables": len(data.get("tables", [])), "tool_rows": data.get("rows"),
            "tool_seconds": data.get("seconds")}


def _pg_dump_restore(compress: list[str]) -> RunFn:
    def run(ctx: Context, procs: Processes) -> dict[str, Any]:
        phases: Phases = {}
        t = time.monotonic()
        dump = ctx.workdir / "dump"
        procs.run([program(ctx.source, "pg_dump"), *_conn_args(ctx.source), "-Fd",
                   "-j", str(JOBS), *compress, "-f", str(dump), DBNAME], "pg_dump")
        t = timed(phases, "dump", t)
        procs.run([program(ctx.target, "pg_restore"), *_conn_args(ctx.target), "-j", str(JOBS),
                   "-d", ctx.target_db, str(dump)], "pg_restore")
        timed(phases, "restore", t)
        return {"phases": phases}

    return run


def run_pgcopydb(ctx: Context, procs: Processes) -> dict[str, Any]:
    # pgcopydb calls pg_dump and pg_restore from PATH: the source's own installation first, so
    # their major matches the servers'. URIs (with the password) go through its environment
    # variables, not argv. pgcopydb 0.10 runs as root as well, so no user switch is needed.
    procs.env = {**procs.env,
                 "PATH": f"{ctx.source.bindir}{os.pathsep}{procs.env.get('PATH', '')}",
                 "PGCOPYDB_SOURCE_PGURI": ctx.source.url(DBNAME),
                 "PGCOPYDB_TARGET_PGURI": ctx.target.url(ctx.target_db)}
    procs.run(["pgcopydb", "clone", "--dir", str(ctx.workdir / "pgcopydb"),
               "--table-jobs", str(JOBS), "--index-jobs", str(JOBS)], "pgcopydb clone")
    return {}


def _copy_pipe(ctx: Context, procs: Processes, table: str) -> None:
    """``psql COPY TO STDOUT | psql COPY FROM STDIN`` for one table, through an OS pipe.

    Binary format, as ``rdsmigrate copy`` uses between servers of one major: text would make
    the limit ~10-30 % slower on this dataset (measured on pgbench_accounts) and flatter
    whoever is compared to it.
    """
    out = procs.start([program(ctx.source, "psql"), "-X", *_conn_args(ctx.source), "-d", DBNAME,
                       "-v", "ON_ERROR_STOP=1", "-c", f"COPY {table} TO STDOUT (FORMAT binary)"],
                      stdout=subprocess.PIPE)
    into = procs.start([program(ctx.target, "psql"), "-X", "-q", *_conn_args(ctx.target),
                        "-d", ctx.target_db, "-v", "ON_ERROR_STOP=1",
                        "-c", f"COPY {table} FROM STDIN (FORMAT binary)"],
                       stdin=out.stdout, stdout=subprocess.DEVNULL)
    assert out.stdout is not None
    out.stdout.close()  # the pipe now belongs to the two psql processes alone
    out.stdout = None
    procs.wait(into, f"psql COPY FROM {table}")
    procs.wait(out, f"psql COPY TO {table}")


def pre_data(ctx: Context, procs: Processes) -> None:
    """The pre-data schema (tables, types, sequences; no indexes, no constraints but NOT NULL and
    CHECK) through ``pg_dump --section=pre-data | psql``."""
    dump = procs.start([program(ctx.source, "pg_dump"), *_conn_args(ctx.source),
                        "--section=pre-data", DBNAME], stdout=subprocess.PIPE)
    load = procs.start([program(ctx.target, "psql"), "-X", "-q", *_conn_args(ctx.target),
                        "-d", ctx.target_db, "-v", "ON_ERROR_STOP=1"],
                       stdin=dump.stdout, stdout=subprocess.DEVNULL)
    assert dump.stdout is not None
    dump.stdout.close()
    dump.stdout = None
    procs.wait(load, "psql (pre-data)")
    procs.wait(dump, "pg_dump --section=pre-data")


def post_data(ctx: Context, procs: Processes) -> None:
    """Indexes, constraints and triggers with ``pg_restore -j JOBS --section=post-data``."""
    post = ctx.workdir / "post-data.dump"
    procs.run([program(ctx.source, "pg_dump"), *_conn_args(ctx.source), "-Fc",
               "--section=post-data", "-f", str(post), DBNAME], "pg_dump --section=post-data")
    procs.run([program(ctx.target, "pg_restore"), *_conn_args(ctx.target), "-j", str(JOBS),
               "-d", ctx.target_db, str(post)], "pg_restore (post-data)")


def run_raw_limit(ctx: Context, procs: Processes) -> dict[str, Any]:
    """Schema, then every table through a psql pipe two at a time, then post-data."""
    phases: Phases = {}
    t = time.monotonic()
    pre_data(ctx, procs)
    t = timed(phases, "schema", t)
    with connect(ctx.source, DBNAME) as conn:
        tables = [sql.Identifier(s, n).as_string(None) for s, n in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY pg_relation_size(c.oid) DESC").fetchall()]
    with ThreadPoolExecutor(JOBS) as pool:
        for future in [pool.submit(_copy_pipe, ctx, procs, table) for table in tables]:
            future.result()
    t = timed(phases, "data", t)
    post_data(ctx, procs)
    timed(phases, "post-data", t)
    return {"phases": phases}


def pgcopydb_version() -> str | None:
    """The installed pgcopydb's version, or None when it is not installed."""
    if shutil.which("pgcopydb") is None:
        return None
    out = subprocess.run(["pgcopydb", "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout + out.stderr).strip().splitlines()
    return next((line.split("version", 1)[1].strip() for line in first if "version" in line), "?")


def all_contenders(many_tables: bool = False) -> list[Contender]:
    """Every contender, in the order each round runs them (verify last: it reads a copy).

    The many-tables dataset has its own list: no raw limit nor ``-Z 0`` (see ``TABLES_NOTE`` in
    ``bench.runner``), and ``preflight`` and ``sync`` + ``cutover`` timed too (issue 13)."""
    no_pgcopydb = None if shutil.which("pgcopydb") else (
        "pgcopydb is not installed (Debian package pgcopydb; `make bench` installs it as root)")
    by_key = {c.key: c for c in [
        Contender("copy", "rdsmigrate copy", f"rdsmigrate copy --jobs {JOBS}",
                  run_rdsmigrate_copy),
        Contender("pg_dump", "pg_dump+pg_restore",
                  f"pg_dump -Fd -j {JOBS} + pg_restore -j {JOBS}", _pg_dump_restore([])),
        Contender("pg_dump_z0", "pg_dump -Z0+pg_restore",
                  f"pg_dump -Fd -j {JOBS} -Z 0 + pg_restore -j {JOBS}",
                  _pg_dump_restore(["-Z", "0"])),
        Contender("pgcopydb", "pgcopydb clone",
                  f"pgcopydb clone --table-jobs {JOBS} --index-jobs {JOBS}", run_pgcopydb,
                  unavailable=no_pgcopydb),
        Contender("raw", "raw limit",
                  f"pg_dump --section=pre-data | psql; psql COPY TO | psql COPY FROM (binary), "
                  f"{JOBS} tables at a time; pg_restore -j {JOBS} --section=post-data",
                  run_raw_limit),
        Contender("sync", "rdsmigrate sync+cutover",
                  f"rdsmigrate sync --jobs {JOBS}; rdsmigrate cutover",
                  run_rdsmigrate_sync_cutover),
        Contender("preflight", "rdsmigrate preflight", "rdsmigrate preflight",
                  run_rdsmigrate_preflight, writes_target=False, empty_target=True),
        Contender("verify", "rdsmigrate verify", f"rdsmigrate verify --jobs {JOBS}",
                  run_rdsmigrate_verify, writes_target=False),
    ]}
    keys = (("copy", "pg_dump", "pgcopydb", "sync", "preflight", "verify") if many_tables else
            ("copy", "pg_dump", "pg_dump_z0", "pgcopydb", "raw", "verify"))
    return [by_key[k] for k in keys]
