"""Errors the CLI turns into exit codes.

0 success, 1 verification found differences, 2 a user or environment error (the message names
the problem and the fix), 3 an internal error (a bug: the CLI shows a traceback with --debug),
130 interrupted.

``status`` of an online migration exits 10-13 when it is unhealthy; when several apply, the first
in this order, which is also the order of urgency (each later one is often caused by an earlier
one): 10 the slot is at risk or lost (the source's WAL and the migration itself are at stake), 11
the source's schema changed since the copy (DDL drift), 12 the apply worker reported errors since
the last ``status``, 13 replication is not streaming.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_USER = 2
EXIT_INTERNAL = 3
EXIT_SLOT_AT_RISK = 10
EXIT_DDL_DRIFT = 11
EXIT_APPLY_ERRORS = 12
EXIT_NOT_STREAMING = 13
EXIT_INTERRUPTED = 130


class RdsMigrateError(Exception):
    """Base of the errors we raise on purpose.

    ``str(exc)`` is the one line a person reads (``problem: fix``); ``problem`` and ``fix`` are
    the two halves, kept apart for the ``--json`` envelope. Without ``fix`` the message may carry
    its fix inline, as most of ours do.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        super().__init__(f"{problem}: {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


class UserError(RdsMigrateError):
    """Bad input or environment: one line, naming the problem and the fix."""

    exit_code = EXIT_USER


class DifferencesFound(RdsMigrateError):
    """Verification found source and target differ."""

    exit_code = EXIT_DIFFERENCES


class Unhealthy(RdsMigrateError):
    """``status`` found the online migration unhealthy; ``exit_code`` is one of 10-13."""

    def __init__(self, problem: str, exit_code: int) -> None:
        super().__init__(problem)
        self.exit_code = exit_code


class Interrupted(RdsMigrateError):
    """The user stopped the command (Ctrl-C, SIGTERM or SIGHUP); the message says what state
    remains. The CLI exits 128 + the signal (``rdsmigrate.interrupts``), 130 for Ctrl-C."""

    exit_code = EXIT_INTERRUPTED
