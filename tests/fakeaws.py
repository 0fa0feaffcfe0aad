"""Credentials and region for tests that talk to moto's AWS: one place, so no test reaches a real
account through a profile or a session token left in the environment."""

from __future__ import annotations

import pytest


def fake_credentials(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
