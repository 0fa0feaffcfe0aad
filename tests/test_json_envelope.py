"""``--json`` prints one envelope on stdout for every outcome of every command: success, a
refusal with its fix, blockers, differences, an internal error and an interrupt. Errors also go
to stderr as one line; stdout holds nothing but the envelope.

Successes, refusals, blockers and differences come from real servers. An internal error (a bug)
and Ctrl-C cannot be produced on demand by real input, so those two replace the phase with one
that raises, which tests the CLI's handling and nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from rdsmigrate import preflight
from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.conftest import admin, master

KEYS = ["command", "ok", "exit_code", "error", "result"]


def _invoke(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, list(args))
    body = json.loads(result.stdout)  # the whole of stdout is the one envelope
    assert list(body) == KEYS
    assert body["exit_code"] == result.exit_code and body["ok"] is (result.exit_code == 0)
    return result.exit_code, body, result.stderr


def test_success_and_blockers_of_preflight(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    args = ["preflight", "-s", pg_source.url(source_db), "-t", pg_target.url(target_db), "--json"]
    code, body, stderr = _invoke(*args)
    assert (code, body["command"], body["error"], stderr) == (0, "preflight", None, "")
    assert body["result"]["ready"] is True

    with admin(pg_target, target_db) as conn:
        conn.execute("CREATE TABLE already_here (id int)")
    code, body, stderr = _invoke(*args)
    assert code == 2 and body["result"]["ready"] is False
    assert body["error"] == {
        "message": f"target database {target_db} is not empty (1 user object)",
        "fix": "copy into an empty database (createdb), or rerun with --replace to drop and "
               "recreate the objects the copy brings"}
    blocker = body["result"]["blockers"][0]
    assert (blocker["code"], blocker["severity"]) == ("target-not-empty", "blocker")
    assert stderr == f"error: {body['error']['message']}: {body['error']['fix']}\n"


def test_a_refusal_before_any_result_and_a_bad_option(
    pg_target: LocalCluster, target_db: str,
) -> None:
    code, body, stderr = _invoke("copy", "-s", "nonsense", "-t",
                                 pg_target.url(target_db), "--json")
    assert (code, body["command"], body["result"]) == (2, "copy", None)
    assert "--source is not a valid libpq connection string" in body["error"]["message"]
    assert stderr.startswith("error: --source is not a valid") and stderr.count("\n") == 1

    code, body, _ = _invoke("verify", "-s", "host=a", "-t", "host=b", "--jobs", "0", "--json")
    assert (code, body["command"], body["result"]) == (2, "verify", None)
    assert body["error"]["message"].startswith("--jobs:")


def test_differences_come_with_the_report(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    for cluster, db, rows in ((pg_source, source_db, 10), (pg_target, target_db, 9)):
        with master(cluster, db) as conn:
            conn.execute(f"CREATE TABLE t (id int PRIMARY KEY); "
                         f"INSERT INTO t SELECT generate_series(1, {rows})")
    code, body, stderr = _invoke("verify", "-s", pg_source.url(source_db), "-t",
                                 pg_target.url(target_db), "--json")
    assert (code, body["command"]) == (1, "verify")
    assert body["error"]["message"].startswith("source and target differ: 1 difference(s)")
    assert body["result"]["identical"] is False and body["result"]["differences"]
    assert stderr.startswith("error: source and target differ")


@pytest.mark.parametrize(("raised", "exit_code", "message", "fix"), [
    (RuntimeError("boom"), 3, "internal error: RuntimeError: boom",
     "this is a bug; rerun with --debug for a traceback"),
    (KeyboardInterrupt(), 130, "interrupted (SIGINT)", None),
])
def test_an_internal_error_and_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, exit_code: int, message: str,
    fix: str | None,
) -> None:
    def phase(*args: object, **kwargs: object) -> preflight.PreflightReport:
        raise raised

    monkeypatch.setattr(preflight, "run", phase)
    code, body, stderr = _invoke("preflight", "-s", "host=a", "-t", "host=b", "--json")
    assert (code, body["command"], body["result"]) == (exit_code, "preflight", None)
    assert body["error"] == {"message": message, "fix": fix}
    assert stderr.count("\n") == 1 and message in stderr


def test_a_command_line_typer_refuses_still_gets_its_envelope() -> None:
    """Typer rejects ``--jobs abc`` before the command runs (so through the real entry point)."""
    proc = subprocess.run([sys.executable, "-c", "from rdsmigrate.cli import main; main()",
                           "copy", "--jobs", "abc", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    body = json.loads(proc.stdout)
    assert (proc.returncode, body["command"], body["exit_code"], body["ok"]) == (
        2, "copy", 2, False)
    assert body["error"]["fix"] == "rdsmigrate copy --help"
    assert "--jobs" in proc.stderr
