"""The copy's worker processes start without the command's own modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import rich.console  # what the CLI imports and a worker must not
from rdsmigrate.copy import workers
from tests import worker_probe

if __name__ == "__main__":
    ctx = workers._context()
    guard = workers._main_not_rerun() if {guarded!r} else __import__("contextlib").nullcontext()
    with guard:
        proc = ctx.Process(target=worker_probe.report_modules, args=({out!r},))
        proc.start()
    proc.join(30)
    assert proc.exitcode == 0, proc.exitcode
    assert sys.modules["__main__"].__file__ == __file__
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_a_worker_does_not_run_the_commands_main_script_again(tmp_path: Path, guarded: bool) -> None:
    """multiprocessing re-runs the parent's main script in every new process; for the console
    script that is the whole CLI (typer, rich, pydantic: ~15 MiB a worker). The unguarded case
    shows the test can see it."""
    out = tmp_path / "modules.json"
    script = tmp_path / "main_script.py"
    script.write_text(SCRIPT.format(repo=str(REPO), guarded=guarded, out=str(out)))
    subprocess.run([sys.executable, str(script)], check=True, timeout=60, cwd=tmp_path)
    modules = set(json.loads(out.read_text()))
    assert "psycopg" in modules  # what the forkserver preloaded
    assert ("rich" in modules) is not guarded
