"""The differential harness of the corpus tests: one database, two tools, one comparator.

``differential()`` copies a source database with ``rdsmigrate copy`` (as the master user) into
one fresh target database and with ``pg_dump -Fc | pg_restore`` (as the master user too) into
another, then compares each with the source through tests/oracle/compare.py (which shares no
code with rdsmigrate). A test then requires that every difference rdsmigrate's copy shows is one
``pg_dump | pg_restore`` shows as well, and names each one it accepts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from typer.testing import CliRunner

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.conftest import create_database, drop_database, superuser_dsn
from tests.oracle import compare


@dataclass
class Outcome:
    name: str
    rdsmigrate: dict[str, str]
    """Differences of rdsmigrate's target from the source (name -> what differs)."""
    restore: dict[str, str]
    """Differences of the pg_dump | pg_restore target from the source."""
    copy_exit: int
    copy_output: str
    restore_errors: int
    seconds: dict[str, float]

    def unexplained(self) -> dict[str, str]:
        """rdsmigrate's differences that pg_dump | pg_restore does not also have."""
        return {k: v for k, v in self.rdsmigrate.items() if k not in self.restore}

    def summary(self) -> str:
        return (f"{self.name}: rdsmigrate copy exit {self.copy_exit}, {len(self.rdsmigrate)} "
                f"differences ({len(self.unexplained())} not shared with pg_restore); "
                f"pg_dump|pg_restore {len(self.restore)} differences, {self.restore_errors} "
                f"restore errors; " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))


def pg_dump_restore(bindir: Path, source_dsn: str, target_dsn: str) -> int:
    """``pg_dump -Fc | pg_restore``; the number of errors pg_restore reported (it goes on), plus
    1000 when pg_dump itself failed."""
    dump = subprocess.Popen([str(bindir / "pg_dump"), "-Fc", "-d", source_dsn],
                            stdout=subprocess.PIPE)
    assert dump.stdout is not None
    with dump.stdout:
        restore = subprocess.run([str(bindir / "pg_restore"), "-d", target_dsn],
                                 stdin=dump.stdout, capture_output=True, text=True)
    errors = restore.stderr.count("pg_restore: error:")
    # pg_dump failing (RLS forced on a table the user does not bypass, say) is pg_dump's
    # difference: whatever the target lacks then counts against pg_dump | pg_restore.
    return errors + (1000 if dump.wait() != 0 else 0)


def rdsmigrate_copy(source: LocalCluster, source_db: str, target: LocalCluster, target_db: str,
                    state: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [
        "copy", "-s", source.url(source_db), "-t", target.url(target_db), "--jobs", "2",
        "--state-dir", str(state), "--json", *extra,
    ])
    return result.exit_code, result.output


def differential(name: str, source: LocalCluster, source_db: str, target: LocalCluster,
                 tmp_path: Path, *, roles: bool = False) -> Outcome:
    """Both tools on ``source_db``; their differences from the source, as the comparator sees."""
    bindir = target.bindir if target.major >= source.major else source.bindir
    seconds = {}
    t0 = time.monotonic()
    expected = compare.image(superuser_dsn(source, source_db), bindir / "pg_dump", roles=roles)
    seconds["compare source"] = time.monotonic() - t0

    ours = create_database(target, "corpus_rds")
    theirs = create_database(target, "corpus_restore")
    try:
        t0 = time.monotonic()
        exit_code, output = rdsmigrate_copy(source, source_db, target, ours, tmp_path / "state",
                                            *(["--roles"] if roles else []))
        seconds["rdsmigrate copy"] = time.monotonic() - t0
        t0 = time.monotonic()
        errors = pg_dump_restore(bindir, source.dsn(source_db), target.dsn(theirs))
        seconds["pg_dump|pg_restore"] = time.monotonic() - t0
        t0 = time.monotonic()
        got_ours = compare.image(superuser_dsn(target, ours), bindir / "pg_dump", roles=roles)
        got_theirs = compare.image(superuser_dsn(target, theirs), bindir / "pg_dump", roles=roles)
        seconds["compare targets"] = time.monotonic() - t0
    finally:
        drop_database(target, ours)
        drop_database(target, theirs)
    outcome = Outcome(name, compare.differences(expected, got_ours),
                      compare.differences(expected, got_theirs), exit_code, output, errors,
                      seconds)
    print(outcome.summary())
    return outcome


def explain(outcome: Outcome, accepted: dict[str, str]) -> None:
    """rdsmigrate's differences are exactly ``accepted`` (name or fnmatch pattern -> why), each
    shared with pg_dump | pg_restore, and each accepted name still occurs."""
    if where := os.environ.get("RDSMIGRATE_CORPUS_DIFFS"):  # a folder to keep them in
        Path(where).mkdir(parents=True, exist_ok=True)
        file = Path(where) / (re.sub(r"[^\w.+-]+", "_", outcome.name) + ".json")
        file.write_text(json.dumps({"rdsmigrate": outcome.rdsmigrate,
                                    "pg_restore": outcome.restore}, indent=1))
    assert outcome.copy_exit == 0, outcome.copy_output[-3000:]
    unexplained = outcome.unexplained()
    assert not unexplained, f"{outcome.name}: rdsmigrate differs where pg_restore does not: " + \
        json.dumps(unexplained, indent=1)[:6000]
    unnamed = [d for d in outcome.rdsmigrate if not any(fnmatchcase(d, a) for a in accepted)]
    stale = [a for a in accepted if not any(fnmatchcase(d, a) for d in outcome.rdsmigrate)]
    assert not unnamed and not stale, (
        f"{outcome.name}: differences shared with pg_restore but not named in the test: "
        f"{unnamed[:40]}; named but gone: {stale}")
