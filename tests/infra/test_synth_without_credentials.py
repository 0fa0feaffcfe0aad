"""Issue point 1: `python app.py` and the pinned npm `cdk synth` both work without credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import REPO, clean_env

# Separate group: these run as subprocesses and can overlap with the in-process syntheses.
pytestmark = pytest.mark.xdist_group("infra-cli")

CDK = REPO / "node_modules" / ".bin" / "cdk"


def _template(outdir: Path) -> dict[str, object]:
    return json.loads((outdir / "RdsMigrationStack.template.json").read_text())


def test_python_app_synthesizes_without_credentials(tmp_path: Path) -> None:
    env = clean_env()
    env["CDK_OUTDIR"] = str(tmp_path)  # how the CLI tells the app where to write
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "AWS::RDS::DBInstance" in json.dumps(_template(tmp_path))


def test_npm_cdk_synth_without_credentials(tmp_path: Path) -> None:
    assert CDK.exists(), "make test installs the pinned CLI (npm ci) before pytest"
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(tmp_path)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    template = _template(tmp_path)
    resources = template["Resources"]
    assert isinstance(resources, dict)
    assert "AWS::SecretsManager::RotationSchedule" in {r["Type"] for r in resources.values()}
