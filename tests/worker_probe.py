"""A process target for tests/test_workers.py that imports nothing but the standard library."""

from __future__ import annotations

import json
import sys


def report_modules(path: str) -> None:
    with open(path, "w") as f:
        json.dump(sorted(name.split(".")[0] for name in sys.modules), f)
