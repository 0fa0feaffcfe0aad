"""``rdsmigrate copy``: schema and rows from one consistent snapshot of the source, in parallel.

Kept free of imports on purpose: the copy's worker processes import ``rdsmigrate.copy.stream``,
and everything imported here would be loaded again in each of them. ``run`` and ``CopyReport``
are served lazily from :mod:`rdsmigrate.copy.orchestrate` and :mod:`rdsmigrate.copy.report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdsmigrate.copy.orchestrate import run
    from rdsmigrate.copy.report import CopyReport

__all__ = ["CopyReport", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from rdsmigrate.copy.orchestrate import run

        return run
    if name == "CopyReport":
        from rdsmigrate.copy.report import CopyReport

        return CopyReport
    raise AttributeError(name)
