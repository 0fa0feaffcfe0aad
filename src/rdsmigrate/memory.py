"""Handing the memory of short-lived objects back to the system after the steps that make many.

The command's peak memory at 10,000 tables is what it holds while its workers copy rows, and
part of that was garbage: glibc keeps what a process frees inside its heap for reuse, and
reading 30,000 post-data entries (a 6 MB script, its decoded text, a match per entry, a row per
entry from the source) left 15 MiB freed but still resident, the pre-data's 10,000 entries 9 MiB
more. ``malloc_trim`` returns the free pages to the system; live objects stay where they are.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def release() -> None:
    """Collect garbage, then give free heap pages back (glibc only; elsewhere nothing)."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return
    trim(0)
