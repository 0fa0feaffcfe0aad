"""Test-only: hold a command at a named step so a fault test can kill it exactly there.

With ``RDSMIGRATE_TEST_PAUSE_AT=<step>`` (a comma-separated list is allowed) and
``RDSMIGRATE_TEST_PAUSE_DIR=<dir>``, reaching the step creates ``<dir>/<step>.reached`` and waits
(at most 120 s) until ``<dir>/<step>.go`` exists. Unset, :func:`pause` costs one dictionary
lookup and does nothing; nothing in normal use sets these variables. The steps are named where
:func:`pause` is called (``rdsmigrate.online.sync``, ``.cutover``, ``rdsmigrate.copy.orchestrate``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "RDSMIGRATE_TEST_PAUSE_AT"
PAUSE_DIR = "RDSMIGRATE_TEST_PAUSE_DIR"
MAX_WAIT_S = 120.0


def pause(step: str) -> None:
    wanted = os.environ.get(PAUSE_AT)
    if not wanted or step not in wanted.split(","):
        return
    where = Path(os.environ.get(PAUSE_DIR, "."))
    (where / f"{step}.reached").touch()
    deadline = time.monotonic() + MAX_WAIT_S
    while not (where / f"{step}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
