"""Summaries, the printed table and the JSON file of one benchmark.

Medians, because a single slow run (a checkpoint, the page cache) should not move the quoted
figure; min and max beside them so the spread is visible. MB/s is the source database's size
(``pg_database_size``, indexes included) over the median wall time, the same divisor for every
contender, so the column ranks them exactly as the seconds do but reads in a unit users know.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def summarize(runs: list[dict[str, Any]], database_bytes: int) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    if not ok:
        return {"verified_runs": 0, "failed_runs": len(runs)}
    seconds = [r["seconds"] for r in ok]
    median = statistics.median(seconds)
    return {
        "verified_runs": len(ok),
        "failed_runs": len(runs) - len(ok),
        "median_s": round(median, 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "mb_per_s": round(database_bytes / 1e6 / median, 1) if median > 0 else None,
        "peak_rss_mib": round(max(r["usage"]["peak_rss_mib"] for r in ok), 1),
        "peak_pss_mib": round(max(r["usage"]["peak_pss_mib"] for r in ok), 1),
        "peak_process_rss_mib": round(max(r["usage"]["peak_process_rss_mib"] for r in ok), 1),
        "cpu_s": round(statistics.median(r["usage"]["cpu_seconds"] for r in ok), 2),
        "server_cpu_s": round(statistics.median(r["usage"]["server_cpu_seconds"] for r in ok), 2),
        "other_cpu_s": round(statistics.median(r["usage"]["other_cpu_seconds"] for r in ok), 2),
    }


def add_ratios(contenders: list[dict[str, Any]]) -> None:
    """Each contender's median over the raw limit's and over ``rdsmigrate copy``'s."""
    medians = {c["key"]: c["summary"].get("median_s") for c in contenders}
    for c in contenders:
        mine = c["summary"].get("median_s")
        for ref, field in (("raw", "ratio_to_raw"), ("copy", "ratio_to_copy")):
            base = medians.get(ref)
            c["summary"][field] = round(mine / base, 2) if mine and base else None


def machine_facts() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total_kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any], console: Console) -> None:
    ds, machine = result["dataset"], result["machine"]
    what = (f"{ds['many_tables']:,} tables" if ds.get("many_tables") else f"scale {ds['scale']}")
    title = (f"{what} ({ds['database_mb']:.0f} MB, {ds['total_rows']:,} rows), "
             f"{result['options']['rounds']} rounds, {machine['cores']} cores, "
             f"PostgreSQL {machine['postgresql']}")
    table = Table(title=title, title_justify="left")
    for name in ("contender", "ok/runs", "median s", "min s", "max s", "MB/s",
                 "peak RSS MiB", "peak PSS MiB", "CPU s tool/srv", "x raw", "x copy",
                 "others CPU s"):
        table.add_column(name, justify="left" if name == "contender" else "right")
    for c in result["contenders"]:
        s = c["summary"]
        if c.get("unavailable"):
            table.add_row(c["label"], "absent", *["-"] * 10)
            continue
        table.add_row(
            c["label"], f"{s['verified_runs']}/{s['verified_runs'] + s['failed_runs']}",
            _fmt(s.get("median_s"), ".2f"), _fmt(s.get("min_s"), ".2f"),
            _fmt(s.get("max_s"), ".2f"), _fmt(s.get("mb_per_s")), _fmt(s.get("peak_rss_mib"), ".0f"),
            _fmt(s.get("peak_pss_mib"), ".0f"),
            f"{_fmt(s.get('cpu_s'))} / {_fmt(s.get('server_cpu_s'))}",
            _fmt(s.get("ratio_to_raw"), ".2f"), _fmt(s.get("ratio_to_copy"), ".2f"),
            _fmt(s.get("other_cpu_s")))
    console.print(table)
    for c in result["contenders"]:
        if c.get("unavailable"):
            console.print(f"{c['label']}: not run: {c['unavailable']}", markup=False)
        for run in c["runs"]:
            if not run["ok"]:
                console.print(f"{c['label']} round {run['round']}: FAILED, not timed: "
                              f"{run['error']}", markup=False)
    disturbed = [f"{c['label']} round {r['round']} ({r['usage']['other_cpu_seconds']:.0f} CPU s)"
                 for c in result["contenders"] for r in c["runs"]
                 if r["ok"] and r.get("usage") and r["usage"]["other_cpu_seconds"] > 0.1 * r["seconds"]
                 * (result["machine"]["cores"] or 1)]
    if disturbed:
        console.print("other processes on the machine used more than 10 % of its CPU during: "
                      + ", ".join(disturbed), markup=False, highlight=False)
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)


def write(result: dict[str, Any], out: Path | None, prefix: str = "bench") -> list[Path]:
    """``out`` when given; else a timestamped file and ``latest.json`` (``<prefix>-latest.json``
    for another prefix) under bench/results/."""
    text = json.dumps(result, indent=2) + "\n"
    if out is not None:
        targets = [out]
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        latest = "latest.json" if prefix == "bench" else f"{prefix}-latest.json"
        label = result.get("label") or f"scale{result['dataset']['scale']}"
        targets = [RESULTS / f"{prefix}-{stamp}-{label}.json",
                   RESULTS / latest]
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return targets


def markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table, for the README's Performance section."""
    ds, machine = result["dataset"], result["machine"]
    lines = [
        f"Scale {ds['scale']}: {ds['database_mb']:.0f} MB, {ds['total_rows']:,} rows; "
        f"{result['options']['rounds']} rounds; {machine['cores']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB; PostgreSQL {machine['postgresql']}; {result['started']}.",
        "",
        "| contender | verified | median s | min s | max s | MB/s | peak PSS MiB | peak RSS MiB "
        "| CPU s tool / servers | x raw | x copy | others CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in result["contenders"]:
        s = c["summary"]
        if c.get("unavailable"):
            lines.append(f"| {c['label']} | absent |" + " - |" * 10)
            continue
        lines.append(
            f"| {c['label']} | {s['verified_runs']}/{s['verified_runs'] + s['failed_runs']} "
            f"| {_fmt(s.get('median_s'), '.2f')} | {_fmt(s.get('min_s'), '.2f')} "
            f"| {_fmt(s.get('max_s'), '.2f')} | {_fmt(s.get('mb_per_s'))} "
            f"| {_fmt(s.get('peak_pss_mib'), '.0f')} | {_fmt(s.get('peak_rss_mib'), '.0f')} "
            f"| {_fmt(s.get('cpu_s'))} / {_fmt(s.get('server_cpu_s'))} "
            f"| {_fmt(s.get('ratio_to_raw'), '.2f')} | {_fmt(s.get('ratio_to_copy'), '.2f')} "
            f"| {_fmt(s.get('other_cpu_s'))} |")
    return "\n".join(lines) + "\n"
