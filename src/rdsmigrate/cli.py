"""The ``rdsmigrate`` command line: parses and validates options, runs a phase, renders its result.

Exit codes: 0 success, 1 verification found differences, 2 a user or environment error,
3 an internal error, 128 + the signal when interrupted (130 SIGINT, 143 SIGTERM, 129 SIGHUP;
the same cleanup as a failure ran first, see :mod:`rdsmigrate.interrupts`). Results go to stdout
(with ``--json``, one envelope for every outcome, see :func:`envelope`); progress, messages and
errors go to stderr. No password reaches either: endpoints describe themselves as
``user@host:port/db``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import psycopg
import pydantic
import typer

from rdsmigrate import interrupts
from rdsmigrate.db.connect import Endpoint, redact_secrets
from rdsmigrate.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USER,
    DifferencesFound,
    Interrupted,
    RdsMigrateError,
    Unhealthy,
)
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions, Selection, VerifyOptions

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Move a PostgreSQL database to Amazon RDS (or any PostgreSQL) without losing a row.",
)

F = TypeVar("F", bound=Callable[..., Any])
_debug = False


class Renderable(Protocol):
    def render(self, reporter: Reporter) -> None: ...
    def model_dump_json(self, *, indent: int | None = None) -> str: ...


class _Run:
    """What the running command produced, for its envelope: the last result it emitted, and
    whether the envelope was printed."""

    result: Renderable | None = None
    enveloped: bool = False


_run = _Run()


def envelope(command: str, exit_code: int, result: Renderable | None,
             problem: str | None = None, fix: str | None = None) -> str:
    """The one shape of every ``--json`` output, success or failure (so a script never parses
    two shapes, or an empty stdout): ``command``, ``ok``, ``exit_code``, ``error`` (``message``
    and its ``fix``, or null) and ``result`` (the command's report, or null; a failure may come
    with one, such as preflight's blockers or verify's differences)."""
    body = {
        "command": command,
        "ok": exit_code == EXIT_OK,
        "exit_code": exit_code,
        "error": None if problem is None else {"message": problem, "fix": fix},
        "result": None if result is None else json.loads(result.model_dump_json()),
    }
    return json.dumps(body, indent=2)


def handled(func: F) -> F:
    """Run a command: its results on stdout (the ``--json`` envelope, or the rendered report),
    errors, progress and messages on stderr; our errors become one line and an exit code,
    anything else is a bug (exit 3)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        # The function's name is the command's (``aws_run`` for ``aws run``).
        command = func.__name__.replace("_", " ")
        _run.result = None
        code, problem, fix, line = EXIT_OK, None, None, None
        try:
            func(*args, **kwargs)
        except RdsMigrateError as exc:
            code, problem = exc.exit_code, redact_secrets(exc.problem)
            if isinstance(exc, Interrupted):
                code = interrupts.exit_code()
            fix = exc.fix and redact_secrets(exc.fix)
            line = f"error: {problem}" + (f": {fix}" if fix else "")
        except pydantic.ValidationError as exc:
            code, problem = EXIT_USER, "; ".join(
                f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                for e in exc.errors()
            )
            line = f"error: {problem}"
        except KeyboardInterrupt:
            code, problem = interrupts.exit_code(), f"interrupted ({interrupts.name()})"
            line = problem
        except psycopg.OperationalError as exc:
            # A session ended under the command (a server restarted, failed over or was cut off
            # mid-query): the environment's doing, not a bug.
            code = EXIT_USER
            problem = ("a server ended the connection while the command ran: "
                       + redact_secrets(str(exc).strip().splitlines()[0] if str(exc).strip()
                                        else type(exc).__name__))
            fix = "check that both servers are up (a restart or failover ends every session), then run it again"
            line = f"error: {problem}: {fix}"
        except typer.Exit as exc:
            # Raised by code that has said why itself.
            code = exc.exit_code
            problem = None if code == EXIT_OK else f"exit code {code}"
        except Exception as exc:
            if _debug:
                traceback.print_exc()
            code = EXIT_INTERNAL
            problem = f"internal error: {type(exc).__name__}: {redact_secrets(str(exc))}"
            fix = "this is a bug; rerun with --debug for a traceback"
            line = f"{problem} ({fix})"
        if line is not None:
            _say(line)
        if as_json:
            sys.stdout.write(envelope(command, code, _run.result, problem, fix) + "\n")
            sys.stdout.flush()
            _run.enveloped = True
        if code != EXIT_OK:
            raise typer.Exit(code)

    return wrapper  # type: ignore[return-value]


def _say(text: str) -> None:
    """One line on stderr; a terminal that hung up (SIGHUP) must not turn it into a traceback."""
    with contextlib.suppress(OSError):
        typer.echo(text, err=True)


def _results() -> Reporter:
    """Where results are rendered for people: stdout (progress and messages use stderr)."""
    return Reporter(stream=sys.stdout)


def emit(result: Renderable, as_json: bool, reporter: Reporter) -> None:
    """Hand the command's result over: rendered for people on stdout now, or kept for the
    ``--json`` envelope that :func:`handled` prints when the command ends."""
    _run.result = result
    if not as_json:
        result.render(_results())


SourceOpt = Annotated[
    str | None,
    typer.Option("--source", "-s", envvar="RDSMIGRATE_SOURCE", show_envvar=True,
                 help="Source: libpq connection string, postgresql:// URL, stack:STACK_NAME (a deployed staging stack's outputs and secret) or secret:SECRET_ARN (an RDS credentials secret)."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", "-t", envvar="RDSMIGRATE_TARGET", show_envvar=True,
                 help="Target: libpq connection string, postgresql:// URL, stack:STACK_NAME (a deployed staging stack's outputs and secret) or secret:SECRET_ARN (an RDS credentials secret)."),
]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers.")]
SchemaOpt = Annotated[
    list[str] | None, typer.Option("--schema", "-n", help="Only schemas matching this: case-sensitive, * and ? wildcards (repeatable).")
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude-table", "-T", help="Skip tables named NAME in every selected schema, or SCHEMA.NAME: case-sensitive, * and ? wildcards, double quotes for a literal part (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _endpoints(source: str | None, target: str | None) -> tuple[Endpoint, Endpoint]:
    return (
        Endpoint.parse("source", source, "RDSMIGRATE_SOURCE"),
        Endpoint.parse("target", target, "RDSMIGRATE_TARGET"),
    )


def _selection(schema: list[str] | None, exclude: list[str] | None) -> Selection:
    return Selection(schemas=tuple(schema or ()), exclude_tables=tuple(exclude or ()))


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
@handled
def preflight(
    source: SourceOpt = None,
    target: TargetOpt = None,
    schema: SchemaOpt = None,
    exclude_table: ExcludeOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check both databases before anything is written; exit 2 when something blocks the copy.

    Reads only: versions, privileges, emptiness of the target, extensions, keys, large objects,
    database-level settings, size and an estimate of the copy time.
    """
    from rdsmigrate import preflight as phase

    src, tgt = _endpoints(source, target)
    reporter = Reporter(quiet=quiet or as_json)
    report = phase.run(src, tgt, CopyOptions(selection=_selection(schema, exclude_table)))
    emit(report, as_json, reporter)
    phase.require_ready(report)


@app.command()
@handled
def copy(
    source: SourceOpt = None,
    target: TargetOpt = None,
    jobs: JobsOpt = 4,
    schema: SchemaOpt = None,
    exclude_table: ExcludeOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted copy: keep finished tables, recopy the rest.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Drop the target's objects that the copy recreates instead of refusing a non-empty target.")] = False,
    roles: Annotated[bool, typer.Option("--roles", help="Also create the source's roles on the target (without passwords).")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here (default: .rdsmigrate/copy-report.json).")] = None,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where progress is recorded for --resume.")] = Path(".rdsmigrate"),
    split_mb: Annotated[int | None, typer.Option("--split-mb", min=1, help="Split tables larger than this many MB into ranges shared by workers (default: only a table bigger than one worker's share of the whole copy).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Copy schema and data from one consistent snapshot of the source, in parallel.

    Guarantees every table, sequence, large object, materialized view and database-level setting
    arrives as of one instant of the source. Does not keep the target in sync afterwards.
    """
    from rdsmigrate import copy as phase

    src, tgt = _endpoints(source, target)
    options = CopyOptions(
        jobs=jobs, selection=_selection(schema, exclude_table), resume=resume, replace=replace,
        roles=roles, report_path=report, state_dir=state_dir,
        split_bytes=None if split_mb is None else split_mb * 1024 * 1024,
    )
    reporter = Reporter(quiet=quiet or as_json)
    result = phase.run(src, tgt, options, reporter)
    emit(result, as_json, reporter)


@app.command()
@handled
def verify(
    source: SourceOpt = None,
    target: TargetOpt = None,
    jobs: JobsOpt = 4,
    schema: SchemaOpt = None,
    exclude_table: ExcludeOpt = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per checksummed key range.")] = 100_000,
    checksum: Annotated[str, typer.Option(
        "--checksum", envvar="RDSMIGRATE_VERIFY_CHECKSUM", show_envvar=True,
        help="auto: hash_record_extended when both servers agree on it, else md5; "
             "md5: always the slower md5 of each row's text.")] = "auto",
    roles: Annotated[bool, typer.Option("--roles", help="Also compare large objects' owners and grants (after copy --roles).")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Prove both databases hold the same rows: per-range counts and checksums, computed on each
    server in parallel; sequences and large objects too. Exit 1 when anything differs."""
    from rdsmigrate import verify as phase

    src, tgt = _endpoints(source, target)
    options = VerifyOptions(jobs=jobs, selection=_selection(schema, exclude_table),
                            chunk_rows=chunk_rows, checksum=checksum, roles=roles)  # type: ignore[arg-type]
    reporter = Reporter(quiet=quiet or as_json)
    result = phase.run(src, tgt, options, reporter)
    emit(result, as_json, reporter)
    if not result.identical:
        objects = len({d.object for d in result.differences})
        raise DifferencesFound(
            f"source and target differ: {len(result.differences)} difference(s) in {objects} "
            "object(s), listed in the result")


@app.command()
@handled
def demo(
    scale: Annotated[int, typer.Option("--scale", min=1, max=1000, help="Size of the sample payments database (1 = about 100k rows).")] = 1,
    jobs: JobsOpt = 4,
    keep: Annotated[bool, typer.Option("--keep", help="Leave both clusters running and print how to reach them.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole path on two throwaway local clusters: build a payments database, preflight,
    copy, verify, and summarize. Needs no AWS and no arguments."""
    from rdsmigrate import demo as phase

    reporter = Reporter(quiet=quiet or as_json)
    result = phase.run(scale=scale, jobs=jobs, keep=keep, reporter=reporter)
    emit(result, as_json, reporter)


StateDirOpt = Annotated[
    Path, typer.Option("--state-dir", help="Where the online migration's record is kept.")
]


@app.command()
@handled
def sync(
    source: SourceOpt = None,
    target: TargetOpt = None,
    jobs: JobsOpt = 4,
    schema: SchemaOpt = None,
    exclude_table: ExcludeOpt = None,
    replica_identity_full: Annotated[bool, typer.Option("--replica-identity-full", help="Set REPLICA IDENTITY FULL on tables without a primary key so their updates and deletes replicate.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Drop the target's objects that the copy recreates instead of refusing a non-empty target.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Once streaming, keep showing the status until Ctrl-C.")] = False,
    source_as_seen_by_target: Annotated[str | None, typer.Option("--source-as-seen-by-target", metavar="HOST[:PORT]", help="How the target server reaches the source for its subscription, when not by the address this machine uses (a tunnel or a localhost forward here).")] = None,
    subscription_sslmode: Annotated[str | None, typer.Option("--subscription-sslmode", help="The subscription's sslmode when not the source connection's: the target server has none of this machine's certificate files (require is what an RDS target can use).")] = None,
    unlogged: Annotated[str, typer.Option("--unlogged", help="Unlogged tables, which replication cannot carry: refuse (default), or copy-at-cutover (copied again while the cutover has the source frozen, then counted).")] = "refuse",
    state_dir: StateDirOpt = Path(".rdsmigrate"),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Copy from one consistent snapshot, then stream the source's changes to the target with
    PostgreSQL's logical replication from exactly that snapshot. Returns once streaming."""
    from rdsmigrate.online import status as status_phase
    from rdsmigrate.online import sync as phase
    from rdsmigrate.online.settings import StatusOptions, SyncOptions

    src, tgt = _endpoints(source, target)
    options = SyncOptions(
        copy_options=CopyOptions(jobs=jobs, selection=_selection(schema, exclude_table),
                                 replace=replace, state_dir=state_dir),
        replica_identity_full=replica_identity_full, unlogged=unlogged,  # type: ignore[arg-type]
        source_as_seen_by_target=source_as_seen_by_target,
        subscription_sslmode=subscription_sslmode,
    )
    reporter = Reporter(quiet=quiet or as_json)
    result = phase.run(src, tgt, options, reporter)
    emit(result, as_json, reporter)
    if follow:
        status_phase.watch(src, tgt, StatusOptions(state_dir=state_dir), _results(),
                           as_json=as_json)


@app.command()
@handled
def status(
    source: SourceOpt = None,
    target: TargetOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")] = False,
    warn_wal_mb: Annotated[int, typer.Option("--warn-wal-mb", min=0, help="With max_slot_wal_keep_size unbounded (-1): the slot is at risk (exit 10) when it holds more source WAL than this.")] = 1024,
    min_safe_wal: Annotated[int, typer.Option("--min-safe-wal-percent", min=0, max=100, help="With a bounded max_slot_wal_keep_size: the slot is at risk (exit 10) when less than this share of it is left (safe_wal_size).")] = 20,
    lag_timeout: Annotated[float, typer.Option("--lag-timeout", min=0.1, max=600, help="Seconds to wait for the target to confirm the source's current WAL position (the lag in seconds); a longer lag is shown as 'more than' this.")] = 5.0,
    state_dir: StateDirOpt = Path(".rdsmigrate"),
    as_json: JsonOpt = False,
) -> None:
    """Lag (bytes and seconds), per-table state, WAL held on the source and the slot's safety,
    the apply worker and its errors, and DDL changed on the source since the copy. Exits 10 when
    the slot is at risk or lost, 11 on DDL drift, 12 on apply errors since the last status, 13
    when not streaming (the first that applies)."""
    from rdsmigrate.online import status as phase
    from rdsmigrate.online.settings import StatusOptions

    src, tgt = _endpoints(source, target)
    options = StatusOptions(state_dir=state_dir, retained_wal_warn_bytes=warn_wal_mb * 1024 * 1024,
                            lag_probe_s=lag_timeout, safe_wal_min_fraction=min_safe_wal / 100)
    reporter = Reporter()
    if watch:
        phase.watch(src, tgt, options, _results(), as_json=as_json)
    result = phase.run(src, tgt, options)
    emit(result, as_json, reporter)
    if result.problems:
        first = result.problems[0]
        more = f" (+{len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
        raise Unhealthy(f"{first.kind}: {first.message}{more}", result.exit_code)


@app.command()
@handled
def cutover(
    source: SourceOpt = None,
    target: TargetOpt = None,
    max_lag: Annotated[int, typer.Option("--max-lag", min=0, help="Refuse to start while the target is more than this many bytes behind.")] = 16 * 1024 * 1024,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds the frozen source waits for the target to apply its last changes.")] = 60.0,
    verify: Annotated[str, typer.Option("--verify", help="counts (exact row counts), full (verify's checksums) or none.")] = "counts",
    jobs: JobsOpt = 4,
    state_dir: StateDirOpt = Path(".rdsmigrate"),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Freeze the source's writes (every role), let the target apply the last of them, set the
    sequences, verify, and detach the target. Prints the write downtime. On any failure the
    source is unfrozen and replication keeps running."""
    from rdsmigrate.online import cutover as phase
    from rdsmigrate.online.settings import CutoverOptions

    src, tgt = _endpoints(source, target)
    options = CutoverOptions(state_dir=state_dir, max_lag_bytes=max_lag, timeout_s=timeout,
                             verify=verify, jobs=jobs)  # type: ignore[arg-type]
    reporter = Reporter(quiet=quiet or as_json)
    emit(phase.run(src, tgt, options, reporter), as_json, reporter)


@app.command()
@handled
def abort(
    source: SourceOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = Path(".rdsmigrate"),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove every replication object the tool created (subscription, slot, publication), and
    unfreeze the source if the tool froze it. The target's copied data stays."""
    from rdsmigrate.online import abort as phase
    from rdsmigrate.online.settings import AbortOptions

    src, tgt = _endpoints(source, target)
    reporter = Reporter(quiet=quiet or as_json)
    emit(phase.run(src, tgt, AbortOptions(state_dir=state_dir), reporter), as_json, reporter)


@app.command()
@handled
def unfreeze(
    source: SourceOpt = None,
    target: Annotated[str | None, typer.Option("--target", "-t", envvar="RDSMIGRATE_TARGET", show_envvar=True, help="The migration's target, where the cutover recorded whether it detached it (checked before reopening the source).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Reopen the source even though a cutover detached the target (or without --target to check).")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Reopen a source database that a cutover froze (ALTER DATABASE .. RESET
    default_transaction_read_only); refused when the cutover detached the target, unless --force."""
    from rdsmigrate.online import unfreeze as phase

    src = Endpoint.parse("source", source, "RDSMIGRATE_SOURCE")
    tgt = Endpoint.parse("target", target, "RDSMIGRATE_TARGET") if target else None
    reporter = Reporter(quiet=quiet or as_json)
    emit(phase.run(src, tgt, force=force, reporter=reporter), as_json, reporter)


aws_app = typer.Typer(no_args_is_help=True, help="Run rdsmigrate's steps in AWS, inside the staging VPC.")
app.add_typer(aws_app, name="aws")


# Everything from the first word of the command on is the command, options included.
@aws_app.command("run", context_settings={"ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
@handled
def aws_run(
    command: Annotated[list[str] | None, typer.Argument(help="The rdsmigrate command to run, after '--' (e.g. -- status --source secret:ARN --target stack:RdsMigrationStack).", show_default=False)] = None,
    stack: Annotated[str, typer.Option("--stack", help="The staging stack whose migration runner runs the command.")] = "RdsMigrationStack",
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: AWS_REGION or the profile's).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Stream the task's log and exit with its exit code, or only start it and print its ARN.")] = True,
) -> None:
    """Run one rdsmigrate command as a Fargate task in the staging VPC, stream its log, exit
    with its exit code. Credentials come from secret:/stack: specs, never from the command."""
    from rdsmigrate.remote import run as phase

    raise typer.Exit(phase.run(command or [], phase.RunOptions(stack=stack, region=region, wait=wait)))


def main() -> None:
    os.environ.setdefault("PGAPPNAME", "rdsmigrate")
    interrupts.install()
    # `kill -QUIT <pid>` prints every thread's stack to stderr: the way to see where a long run
    # is waiting, without stopping it.
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    try:
        app()
    except SystemExit as exc:
        # A command line typer refuses (an unknown option, a bad value) never reaches handled():
        # typer has printed why on stderr; --json still gets its envelope.
        argv = sys.argv[1:]
        if exc.code not in (0, None) and "--json" in argv and not _run.enveloped:
            command = next((a for a in argv if not a.startswith("-")), "rdsmigrate")
            code = exc.code if isinstance(exc.code, int) else EXIT_USER
            sys.stdout.write(envelope(command, code, None, "the command line is not valid "
                                      "(typer's message is on stderr)",
                                      f"rdsmigrate {command} --help") + "\n")
        raise


if __name__ == "__main__":
    main()
