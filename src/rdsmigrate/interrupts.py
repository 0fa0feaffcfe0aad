"""SIGINT, SIGTERM and SIGHUP end a command the same way: through the cleanup a failure runs.

Without a handler, SIGTERM (a CI timeout, ``docker stop``, ``kill``) and SIGHUP (an SSH session
dropped) end Python at once, skipping every ``except``/``finally``: a cutover left the source
frozen and a sync its slot holding WAL. :func:`install` makes both raise ``KeyboardInterrupt``
like Ctrl-C, so one code path cleans up after all three; the exit code still says which signal
it was (``128 + signal number``: 130 SIGINT, 143 SIGTERM, 129 SIGHUP, as shells report it).

A second signal while that cleanup runs is ignored: cutting the cleanup short is what would leave
the source frozen. SIGKILL cannot be caught: what it leaves is what the state machine's rerun
(see :mod:`rdsmigrate.online.state`) continues from.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: int | None = None


def install() -> None:
    for signum in HANDLED:
        signal.signal(signum, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        return  # the cleanup of the first one is running: let it finish
    _received = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


def exit_code() -> int:
    """The exit code of an interrupted command: 128 + the signal (130 when none was recorded,
    e.g. a KeyboardInterrupt raised in a test)."""
    return 128 + (_received or signal.SIGINT)


def name() -> str:
    return signal.Signals(_received or signal.SIGINT).name
