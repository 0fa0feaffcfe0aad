"""The benchmark works end to end: ``python -m bench`` at a tiny scale, one round.

Runs the public entry point in a subprocess, exactly as ``make bench`` does, and checks the
report's structure and that every run of every contender on this machine verified. Nothing
here looks at a time: performance is asserted by the benchmark's report, never by a unit test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One worker runs the whole module under `make test` (-n 2 --dist loadgroup), so the benchmark
# behind the module-scoped fixture runs once.
pytestmark = [pytest.mark.slow, pytest.mark.pg, pytest.mark.xdist_group("bench")]

SUMMARY_FIELDS = {"verified_runs", "failed_runs", "median_s", "min_s", "max_s", "mb_per_s",
                  "peak_rss_mib", "peak_pss_mib", "peak_process_rss_mib", "cpu_s",
                  "server_cpu_s", "other_cpu_s", "ratio_to_raw", "ratio_to_copy"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("bench") / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "1", "--payments-rows", "20000",
         "--rounds", "1", "--timeout", "120", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout, out


def test_every_contender_on_this_machine_ran_and_verified(bench_run: tuple[dict, str, Path]) -> None:  # type: ignore[type-arg]
    result, _, _ = bench_run
    by_key = {c["key"]: c for c in result["contenders"]}
    assert list(by_key) == ["copy", "pg_dump", "pg_dump_z0", "pgcopydb", "raw", "verify"]
    for key, contender in by_key.items():
        if key == "pgcopydb" and shutil.which("pgcopydb") is None:
            assert contender["unavailable"] and "not installed" in contender["unavailable"]
            assert contender["runs"] == []
            continue
        assert contender["unavailable"] is None, key
        assert [r["ok"] for r in contender["runs"]] == [True], (key, contender["runs"])
        assert set(contender["summary"]) == SUMMARY_FIELDS, key
        usage = contender["runs"][0]["usage"]
        assert usage["peak_rss_mib"] > 0 and usage["cpu_seconds"] > 0, key
        assert usage["server_cpu_seconds"] > 0, key
    assert by_key["raw"]["summary"]["ratio_to_raw"] == 1.0
    assert by_key["copy"]["summary"]["ratio_to_copy"] == 1.0
    assert set(by_key["copy"]["runs"][0]["phases"]) >= {"data", "indexes+constraints"}
    assert set(by_key["raw"]["runs"][0]["phases"]) == {"schema", "data", "post-data"}


def test_report_names_the_machine_the_settings_and_the_dataset(bench_run: tuple[dict, str, Path]) -> None:  # type: ignore[type-arg]
    result, table, _ = bench_run
    assert result["machine"]["cores"] >= 1 and result["machine"]["postgresql"]
    # Durable by default (issue 13): RDS never runs with fsync off.
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        assert result["settings"]["configured"][name] == "on", name
        assert result["settings"]["effective"][name] == "on", name
    assert result["settings"]["effective"]["wal_level"] == "logical"
    assert "shared_buffers" in result["settings"]["effective"]
    dataset = result["dataset"]
    assert dataset["scale"] == 1 and dataset["payments_rows"] == 20000
    assert dataset["tables"]["public.pgbench_accounts"] == 100_000
    assert dataset["tables"]["public.payments"] == 20_000
    # 3 pgbench keys + payments key, uuid and timestamp indexes; 3 + 1 primary keys, 5 foreign keys.
    assert dataset["indexes"] == 6 and dataset["constraints"] == 9
    for label in ("rdsmigrate copy", "raw limit", "rdsmigrate verify", "x raw", "peak RSS"):
        assert label in table


def test_markdown_table_of_a_result_for_the_readme(bench_run: tuple[dict, str, Path]) -> None:  # type: ignore[type-arg]
    result, _, path = bench_run
    proc = subprocess.run([sys.executable, "-m", "bench", "--markdown", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    rows = [line for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 1 + len(result["contenders"])  # header + one row each
    assert rows[1].startswith("| rdsmigrate copy | 1/1 |")


@pytest.mark.parametrize(("only", "message"), [
    ("verify", "verify reads what another contender copied"),
    ("copy,nope", "unknown contender nope"),
])
def test_only_is_checked_before_any_cluster_starts(only: str, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", only], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and message in proc.stderr


def test_online_mode_measures_native_sync_lag_and_cutover(tmp_path: Path) -> None:
    """``python -m bench --online`` at scale 1 with 3 s of pgbench: structure only, no timing."""
    out = tmp_path / "online.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--online", "--scale", "1", "--payments-rows", "20000",
         "--load-seconds", "3", "--rounds", "2", "--timeout", "150", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["mode"] == "online" and result["dataset"]["scale"] == 1
    native, sync, lag, cutover = (result[k] for k in ("native", "sync", "lag", "cutover"))
    documented = result["native_documented"]
    # Two rounds of each: the first sync was aborted and its database dropped before the second.
    assert documented["rounds"] == native["rounds"] == sync["rounds"] == 2
    assert 0 < native["seconds"] <= native["seconds_with_post_data"]
    for run in documented["runs"]:
        assert run["seconds"] > 0 and "schema" in run["phases"]
        assert "post-data" not in run["phases"]  # indexes were there before the sync
    for run in native["runs"]:
        assert set(run["phases"]) == {"schema", "copy_data (until every table is ready)",
                                      "post-data"}
    assert sync["seconds"] > 0 and sync["ratio_to_native"] > 0
    assert result["copy"]["rounds"] == 2 and sync["ratio_to_copy"] > 0
    # Only the very first subscription finds the launcher rested; every later one waited for it.
    assert documented["runs"][0]["launcher_rest_s"] == 0
    assert native["runs"][0]["launcher_rest_s"] > 0
    assert [run["tables"] for run in sync["runs"]] == [5, 5]
    assert sync["runs"][0]["name"] != sync["runs"][1]["name"]
    assert lag["samples"] >= 5 and lag["p95_s"] is not None and lag["p95_bytes"] is not None
    assert lag["probes_given_up"] == 0 and "samples_not_null" in lag["replay_lag"]
    assert lag["max_bytes"] >= lag["p50_bytes"] >= 0
    assert cutover["ok"] and cutover["under_load"] and cutover["verify"] == "counts"
    assert cutover["write_downtime_s"] > 0
    assert cutover["independent_check"] == "identical counts, indexes and constraints"
    assert result["load"]["transactions"] is None or result["load"]["transactions"] > 0
    assert set(result["targets"]) == {"sync_ratio_to_copy", "sync_ratio_to_native_indexes_after",
                                      "lag_p95_s", "write_downtime_s"}
    assert result["targets"]["write_downtime_s"]["target"] == 1.0
    for label in ("native copy_data=true", "rdsmigrate sync", "lag p50 / p95 / max",
                  "cutover write downtime"):
        assert label in proc.stdout


def test_many_tables_mode_reports_every_size_and_how_each_phase_grows(tmp_path: Path) -> None:
    """``python -m bench --tables 20,40``: two sizes of the many-tables dataset, one round each;
    structure only (every contender verified, growth computed), no timing."""
    out = tmp_path / "tables.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tables", "20,40", "--rounds", "1",
         "--only", "copy,pg_dump,sync,preflight,verify", "--timeout", "150", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["kind"] == "tables" and [r["dataset"]["many_tables"] for r in result["runs"]] \
        == [20, 40]
    for one, tables in zip(result["runs"], (20, 40), strict=True):
        # the small tables and one parent per schema
        assert one["dataset"]["table_count"] == tables + 50
        assert one["dataset"]["total_rows"] == (tables + 50) * 100
        assert one["settings"]["effective"]["max_locks_per_transaction"] == "512"
        by_key = {c["key"]: c for c in one["contenders"]}
        assert list(by_key) == ["copy", "pg_dump", "sync", "preflight", "verify"]
        for key, contender in by_key.items():
            assert [r["ok"] for r in contender["runs"]] == [True], (key, contender["runs"])
        assert by_key["sync"]["runs"][0]["write_downtime_s"] > 0
        assert by_key["preflight"]["runs"][0]["blockers"] == 0
    summary = result["summary"]
    assert [s["tables"] for s in summary["sizes"]] == [20, 40]
    assert set(summary["sizes"][1]["ratios"]) == set(summary["targets"])
    assert "copy (whole run)" in summary["growth_exponent"]
    assert "issue 13 targets" in proc.stdout and "growth exponent" in proc.stdout
