"""``rdsmigrate demo``: the whole migration path on two throwaway local clusters.

Order: start both clusters; create ``paymentdb`` on each; build the payments dataset on the source;
then exactly what a user runs against real databases: ``preflight`` (refusing to go on when it
finds a blocker), ``copy`` and ``verify``. The copy's resume state and report live in a temporary
directory, so the demo writes nothing into the working directory.

Guarantees: unless ``keep``, both clusters and every file the demo made are gone when it returns
or raises (Ctrl-C included). With ``keep`` they stay, and the report says how to reach and stop
them; passwords are only ever written to 0600 passfiles, never printed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rdsmigrate import copy, preflight, verify
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.demo import clusters, dataset
from rdsmigrate.demo.report import ClusterAccess, DemoReport, access_lines
from rdsmigrate.errors import DifferencesFound
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions, VerifyOptions

SOURCE_ROLE = "development"
TARGET_ROLE = "staging"
# Differing objects named in the error message; `rdsmigrate verify --json` lists them all.
NAMED_DIFFERENCES = 5


@dataclass(frozen=True)
class _Phases:
    built: dataset.BuildReport
    preflight_seconds: float
    copied: copy.CopyReport
    verified: verify.VerifyReport


def run(*, scale: int, jobs: int, keep: bool, reporter: Reporter) -> DemoReport:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="rdsmigrate-demo-work-"))
    pair: tuple[LocalCluster, LocalCluster] | None = None
    sides: list[ClusterAccess] = []
    succeeded = False
    try:
        with reporter.phase("starting two local PostgreSQL clusters"):
            pair = clusters.start_pair(SOURCE_ROLE, TARGET_ROLE)
        psql = clusters.psql_program(pair[0])
        source, source_server = clusters.create_database(pair[0], "source")
        target, target_server = clusters.create_database(pair[1], "target")
        sides = [clusters.access(pair[0], SOURCE_ROLE, source_server, kept=keep),
                 clusters.access(pair[1], TARGET_ROLE, target_server, kept=keep)]
        reporter.info(f"{SOURCE_ROLE}: {source.describe()} ({source_server}); "
                      f"{TARGET_ROLE}: {target.describe()} ({target_server})")
        done = _migrate(source, target, scale=scale, jobs=jobs, reporter=reporter, workdir=workdir)
        succeeded = True
    except BaseException:
        if keep and sides:
            # The summary that would say where the clusters are is not coming: say it here.
            for line in access_lines(sides, psql, None):
                reporter.stream.write(line + "\n")
        raise
    finally:
        if not keep and pair is not None:
            for cluster in pair:
                cluster.stop()
        # Kept clusters stay for inspection even after a failure; the copy report only with a
        # summary that announces it.
        if not (keep and succeeded):
            shutil.rmtree(workdir, ignore_errors=True)
    copied, verified = done.copied, done.verified
    return DemoReport(
        scale=scale, jobs=jobs, source=sides[0], target=sides[1],
        tables=len(copied.tables), rows=copied.rows, bytes=copied.bytes,
        database_bytes=done.built.database_bytes, build_seconds=done.built.seconds,
        preflight_seconds=done.preflight_seconds, copy_seconds=copied.seconds,
        copy_mb_per_s=round(copied.mb_per_s, 1), verify_seconds=verified.seconds,
        verified_rows=verified.rows, identical=verified.identical,
        sequences=copied.sequences, large_objects=copied.large_objects,
        total_seconds=round(time.monotonic() - started, 3), kept=keep, psql=psql,
        copy_report=workdir / "copy-report.json" if keep else None,
    )


def _migrate(source: Endpoint, target: Endpoint, *, scale: int, jobs: int, reporter: Reporter,
             workdir: Path) -> _Phases:
    with reporter.phase(f"building paymentdb at scale {scale} on {SOURCE_ROLE}"):
        built = dataset.build(source, scale, reporter)
    copy_options = CopyOptions(jobs=jobs, state_dir=workdir / "state",
                               report_path=workdir / "copy-report.json")
    preflight_started = time.monotonic()
    with reporter.phase("preflight"):
        checked = preflight.run(source, target, copy_options)
        if not reporter.quiet:
            checked.render(reporter)
        preflight.require_ready(checked)
    preflight_seconds = round(time.monotonic() - preflight_started, 3)
    with reporter.phase(f"copy with {jobs} jobs"):
        copied = copy.run(source, target, copy_options, reporter)
    with reporter.phase("verify"):
        verified = verify.run(source, target, VerifyOptions(jobs=jobs), reporter)
        # The differences are worth stderr even under --json; a plain "identical" is not.
        if not (reporter.quiet and verified.identical):
            verified.render(reporter)
    if not verified.identical:
        objects = sorted({d.object for d in verified.differences})
        named = ", ".join(objects[:NAMED_DIFFERENCES])
        if len(objects) > NAMED_DIFFERENCES:
            named += ", ..."
        raise DifferencesFound(
            f"verify found {len(verified.differences)} differences between {SOURCE_ROLE} and "
            f"{TARGET_ROLE} in {named}: the copy is not faithful (a bug: please report it "
            "with the output of `rdsmigrate demo --keep` and `rdsmigrate verify --json`)")
    return _Phases(built, preflight_seconds, copied, verified)
