"""``python -m bench``: options, Ctrl-C and SIGTERM handling, the table and the JSON file."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench import online, report, runner, scaling
from bench.contenders import all_contenders


def _parser() -> argparse.ArgumentParser:
    keys = ", ".join(c.key for c in all_contenders())
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time rdsmigrate copy/verify against pg_dump/pg_restore, pgcopydb and the "
                    "raw limit of psql pipes on two throwaway local clusters.")
    p.add_argument("--scale", type=int, default=40,
                   help="pgbench scale (100,000 accounts each) and payments at 50,000 rows per "
                        "unit; 40 makes about 1.1 GB (default: %(default)s)")
    p.add_argument("--payments-rows", type=int, default=None,
                   help="rows of the payments table instead of 50,000 per scale unit")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs of each contender (with --online: of each initial sync), in "
                        "turns; the median is quoted (default: %(default)s)")
    p.add_argument("--only", default="",
                   help=f"comma-separated contenders to run (default: all of {keys})")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds one run may take before it is killed and reported as failed "
                        "(default: %(default)s)")
    p.add_argument("--note", action="append", default=[],
                   help="a sentence about this run's conditions, kept in the report "
                        "(repeatable)")
    p.add_argument("--online", action="store_true",
                   help="instead of the contenders: PostgreSQL's own subscription (copy_data) "
                        "against rdsmigrate sync, the lag under pgbench -N -c 4 -j 2, and the "
                        "cutover's write downtime under that load (issue 5); writes "
                        "bench/results/online-latest.json")
    p.add_argument("--load-seconds", type=int, default=30,
                   help="with --online: seconds of pgbench load during which the lag is "
                        "sampled, before the cutover (default: %(default)s)")
    p.add_argument("--durable", action=argparse.BooleanOptionalAction, default=True,
                   help="run both clusters durable as an RDS instance does (fsync, "
                        "synchronous_commit, full_page_writes on, shared_buffers 512MB); "
                        "--no-durable for the disposable test clusters' settings "
                        "(default: durable)")
    p.add_argument("--tables", default="",
                   help="instead of pgbench + payments: the many-tables dataset (50 schemas, "
                        "small tables with a primary key, an index, a foreign key and 100 rows "
                        "each); a comma-separated list of table counts runs each in turn and "
                        "reports how every phase grows, e.g. 1000,10000")
    p.add_argument("--markdown", type=Path, default=None, metavar="RESULT_JSON",
                   help="print an earlier result as a Markdown table (for the README) and exit")
    p.add_argument("--out", type=Path, default=None,
                   help="write the JSON result here (default: bench/results/<time>.json and "
                        "bench/results/latest.json)")
    return p


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so the finally blocks stop the clusters.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.markdown is not None:
        try:
            result = json.loads(args.markdown.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--markdown {args.markdown}: cannot read it as JSON ({exc})")
        if not isinstance(result, dict) or "contenders" not in result:
            # Online and many-tables results print their own tables when they run.
            parser.error(f"--markdown {args.markdown} is not a copy-benchmark result (no "
                         "contenders in it); pass one written by `python -m bench` without "
                         "--online or --tables, e.g. bench/results/latest.json")
        sys.stdout.write(report.markdown(result))
        return 0
    if args.scale < 1 or args.rounds < 1 or args.load_seconds < 1:
        parser.error("--scale, --rounds and --load-seconds must be at least 1")
    only = tuple(k.strip() for k in args.only.split(",") if k.strip())
    try:
        sizes = [int(n) for n in args.tables.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--tables: {args.tables!r} is not a comma-separated list of table counts")
    if any(n < 1 for n in sizes) or (sizes and args.online):
        parser.error("--tables takes positive counts and does not combine with --online")
    try:
        runner.select(only, bool(sizes))
    except ValueError as exc:
        parser.error(f"--only: {exc}")
    signal.signal(signal.SIGTERM, _terminate)
    console = Console(stderr=True)
    try:
        if args.online:
            result = online.run(online.OnlineOptions(
                scale=args.scale, payments_rows=args.payments_rows,
                load_seconds=args.load_seconds, timeout=args.timeout, notes=tuple(args.note),
                durable=args.durable, rounds=args.rounds),
                console)
        elif sizes:
            result = scaling.run([runner.Options(
                rounds=args.rounds, only=only, timeout=args.timeout, notes=tuple(args.note),
                durable=args.durable, tables=n) for n in sizes], console)
        else:
            result = runner.run(runner.Options(
                scale=args.scale, payments_rows=args.payments_rows, rounds=args.rounds,
                only=only, timeout=args.timeout, notes=tuple(args.note),
                durable=args.durable), console)
    except KeyboardInterrupt:
        console.print("interrupted: clusters stopped and removed")
        return 130
    out = Console()
    # The table has eleven columns: keep it whole when stdout is a file or a pipe.
    wide = out if out.is_terminal and out.width >= 130 else Console(width=150)
    if args.online:
        online.render(result, wide)
        failed = 0 if result["cutover"]["ok"] else 1
    elif sizes:
        scaling.render(result, wide)
        failed = sum(c["summary"]["failed_runs"] for r in result["runs"]
                     for c in r["contenders"])
    else:
        report.render(result, wide)
        failed = sum(c["summary"]["failed_runs"] for c in result["contenders"])
    prefix = "online" if args.online else "tables" if sizes else "bench"
    for path in report.write(result, args.out, prefix=prefix):
        console.print(f"wrote {path}", markup=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
