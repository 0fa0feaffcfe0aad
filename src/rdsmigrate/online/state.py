"""What ``sync`` created, recorded durably so that ``status``, ``cutover`` and ``abort`` find it.

One small JSON file per target database in the state directory, replaced atomically (written
beside, fsync'ed, renamed) so a crash leaves the old record or the new one, never half of each.
It names the replication objects (one name serves the slot, the publication and the subscription),
the tables replicated, and the schema fingerprint of the source at copy time, which is how a DDL
change since the copy is detected: PostgreSQL's logical replication does not carry DDL.

The record is a convenience, not the only trace: every object's name starts with
:data:`~rdsmigrate.copy.snapshot.SLOT_PREFIX`, so ``abort`` still finds them when the file is gone.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError

Phase = Literal["syncing", "streaming", "cutting-over", "cut-over", "aborted"]


class OnlineState(BaseModel):
    source: str
    target: str
    source_dbname: str
    name: str
    """Name of the slot, the publication and the subscription alike."""
    consistent_lsn: str | None = None
    schemas: list[str] = Field(default_factory=list)
    exclude_tables: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)
    fingerprint: dict[str, str] = Field(default_factory=dict)
    """Per relation: md5 of its definition on the source at copy time."""
    replica_identity_full: list[str] = Field(default_factory=list)
    roles: bool = False
    """``sync --roles``: cutover copies large objects again with their owners and grants."""
    """Tables whose replica identity ``sync`` set to FULL, with the user's consent."""
    phase: Phase = "syncing"
    frozen: bool = False
    """True while this tool has the source's writes frozen (``default_transaction_read_only``)."""
    created_at: float = Field(default_factory=time.time)
    cutover: dict[str, Any] | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(self.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def location(state_dir: Path, target: Endpoint) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{target.host}_{target.port}_{target.dbname}")
    return state_dir / f"online-{stem}.json"


def load(state_dir: Path, target: Endpoint) -> OnlineState | None:
    path = location(state_dir, target)
    if not path.exists():
        return None
    try:
        return OnlineState.model_validate_json(path.read_text())
    except ValueError as exc:
        raise UserError(f"the online migration record {path} is unreadable ({exc.__class__.__name__}): "
                        "run `rdsmigrate abort` to remove what the tool created, by name") from None
