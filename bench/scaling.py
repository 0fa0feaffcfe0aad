"""``python -m bench --tables 1000,10000``: the many-tables dataset at several sizes (issue 13).

Each size is a whole benchmark of its own (fresh clusters, dataset, contenders in turns, the
independent check), and the report puts them side by side: each contender's median, the ratios
issue 13 sets targets for, and how each phase of ``rdsmigrate copy`` grows with the number of
tables. Growth is given as an exponent ``k`` in ``time ~ tables^k`` between the smallest and the
largest size: 1 is linear, 2 quadratic. Anything above :data:`SUPERLINEAR` is flagged, because a
step that is quadratic in the number of tables is a bug (a per-table query inside a per-table
loop, a catalog scan per object).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import runner

SUPERLINEAR = 1.25
TARGETS = {"copy / pg_dump+pg_restore": 0.5, "copy / pgcopydb": 0.7, "verify / copy": 0.5,
           "preflight s": 10.0, "cutover downtime s": 2.0}


def run(options: list[runner.Options], console: Console) -> dict[str, Any]:
    results = []
    for opts in options:
        console.print(f"--- {opts.tables:,} tables ---", markup=False)
        results.append(runner.run(opts, console))
    return {"format": 1, "kind": "tables", "label": f"tables{max(o.tables or 0 for o in options)}",
            "started": results[0]["started"], "finished": results[-1]["finished"],
            "machine": results[0]["machine"], "runs": results,
            "summary": summarize(results)}


def _median(contender: dict[str, Any]) -> float | None:
    value = contender["summary"].get("median_s")
    return float(value) if value is not None else None


def _phase_medians(contender: dict[str, Any]) -> dict[str, float]:
    ok = [r for r in contender["runs"] if r["ok"]]
    names = {name for r in ok for name in r.get("phases", {})}
    return {name: statistics.median(r["phases"][name] for r in ok if name in r.get("phases", {}))
            for name in sorted(names)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = []
    for result in results:
        by_key = {c["key"]: c for c in result["contenders"]}
        medians = {k: _median(c) for k, c in by_key.items()}
        downtimes = [r["write_downtime_s"] for r in by_key.get("sync", {"runs": []})["runs"]
                     if r["ok"] and r.get("write_downtime_s") is not None]
        sizes.append({
            "tables": result["dataset"]["many_tables"],
            "medians_s": medians,
            "copy_phases_s": _phase_medians(by_key["copy"]) if "copy" in by_key else {},
            "ratios": {
                "copy / pg_dump+pg_restore": _ratio(medians.get("copy"), medians.get("pg_dump")),
                "copy / pgcopydb": _ratio(medians.get("copy"), medians.get("pgcopydb")),
                "verify / copy": _ratio(medians.get("verify"), medians.get("copy")),
                "preflight s": medians.get("preflight"),
                "cutover downtime s": (round(statistics.median(downtimes), 3)
                                       if downtimes else None),
            },
        })
    growth: dict[str, float | None] = {}
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        span = math.log(last["tables"] / first["tables"])
        pairs = [(f"{k} (whole run)", first["medians_s"].get(k), last["medians_s"].get(k))
                 for k in first["medians_s"]]
        pairs += [(f"copy phase {p}", first["copy_phases_s"].get(p), last["copy_phases_s"].get(p))
                  for p in first["copy_phases_s"]]
        for name, a, b in pairs:
            # Phases under 50 ms at the small size are noise, not a growth rate.
            growth[name] = (round(math.log(b / a) / span, 2)
                            if a and b and a >= 0.05 and span > 0 else None)
    return {"sizes": sizes, "growth_exponent": growth, "targets": TARGETS,
            "superlinear": sorted(k for k, v in growth.items()
                                  if v is not None and v > SUPERLINEAR)}


def render(result: dict[str, Any], console: Console) -> None:
    from bench import report

    for one in result["runs"]:
        report.render(one, console)
    summary = result["summary"]
    table = Table(title="issue 13 targets, many-tables dataset", title_justify="left")
    table.add_column("measurement")
    for size in summary["sizes"]:
        table.add_column(f"{size['tables']:,} tables", justify="right")
    table.add_column("target", justify="right")
    for name, target in TARGETS.items():
        table.add_row(name, *["-" if s["ratios"][name] is None else f"{s['ratios'][name]:.2f}"
                              for s in summary["sizes"]], f"<= {target}")
    console.print(table)
    if summary["growth_exponent"]:
        growth = Table(title="growth exponent k (time ~ tables^k) from the smallest to the "
                             "largest size", title_justify="left")
        growth.add_column("what")
        growth.add_column("k", justify="right")
        for name, k in summary["growth_exponent"].items():
            growth.add_row(name, "-" if k is None else f"{k:.2f}")
        console.print(growth)
    if summary["superlinear"]:
        console.print(f"superlinear (k > {SUPERLINEAR:.2f}): "
                      + ", ".join(summary["superlinear"]), markup=False)
