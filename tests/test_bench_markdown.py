"""``python -m bench --markdown`` on a file it cannot tabulate says so (it raised a KeyError
traceback on an online result)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _markdown(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--markdown", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_online_result_or_a_missing_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    online = tmp_path / "online.json"
    online.write_text(json.dumps({"format": 1, "mode": "online", "sync": {}}))
    proc = _markdown(online)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "not a copy-benchmark result" in proc.stderr and "latest.json" in proc.stderr
    proc = _markdown(tmp_path / "absent.json")
    assert proc.returncode == 2 and "cannot read it as JSON" in proc.stderr, proc.stderr
