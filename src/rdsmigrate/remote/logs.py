"""Following one CloudWatch Logs stream, page by page, as a running task writes it."""

from __future__ import annotations

from typing import Any, TextIO

from rdsmigrate.db.aws import Clients, NotFound
from rdsmigrate.db.connect import redact_secrets


class LogFollower:
    """Prints each event of ``group``/``stream`` once, in order, across repeated :meth:`drain`.

    GetLogEvents pages forward with ``nextForwardToken`` and returns the token it was given at
    the end of the stream; the stream itself exists only once the container has started (the
    awslogs driver creates it), so until then there is simply nothing to print.
    """

    def __init__(self, clients: Clients, group: str, stream: str) -> None:
        self.clients, self.group, self.stream = clients, group, stream
        self._token: str | None = None

    def drain(self, out: TextIO) -> int:
        """Print every event written since the last call; how many."""
        printed = 0
        while True:
            kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream,
                      "startFromHead": True}
            if self._token:
                kwargs["nextToken"] = self._token
            try:
                reply = self.clients.call("logs", "get_log_events",
                                          f"the task's log {self.group}/{self.stream}", **kwargs)
            except NotFound:
                return printed
            for event in reply.get("events") or []:
                # rdsmigrate prints no password; a line from anything else is scrubbed all the
                # same before it reaches the laptop's terminal.
                out.write(redact_secrets(str(event.get("message", "")).rstrip("\n")) + "\n")
                printed += 1
            out.flush()
            token = reply.get("nextForwardToken")
            if not token or token == self._token:
                return printed
            self._token = token
