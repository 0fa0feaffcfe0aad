"""``rdsmigrate demo``: a realistic payments database migrated between two local clusters.

:mod:`rdsmigrate.demo.dataset` builds the database from SQL shipped in this package,
:mod:`rdsmigrate.demo.clusters` owns the two throwaway clusters, and
:mod:`rdsmigrate.demo.orchestrate` runs preflight, copy and verify between them.

``run`` and ``DemoReport`` are served lazily, so that building the dataset alone (the tests, the
benchmark) does not load the whole migration engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdsmigrate.demo.orchestrate import run
    from rdsmigrate.demo.report import DemoReport

__all__ = ["DemoReport", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from rdsmigrate.demo.orchestrate import run

        return run
    if name == "DemoReport":
        from rdsmigrate.demo.report import DemoReport

        return DemoReport
    raise AttributeError(name)
