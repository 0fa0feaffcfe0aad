"""Typed options of the online commands, validated once at the edge (the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rdsmigrate.settings import CopyOptions

DEFAULT_STATE_DIR = Path(".rdsmigrate")
# A slot holding back more WAL than this is worth a warning: the source disk is what it fills.
DEFAULT_RETAINED_WAL_WARN_BYTES = 1024**3
DEFAULT_MAX_LAG_BYTES = 16 * 1024**2
DEFAULT_LAG_PROBE_S = 5.0
# A bounded max_slot_wal_keep_size: the slot is "at risk" once less than this share of it is left.
DEFAULT_SAFE_WAL_MIN_FRACTION = 0.2


class SyncOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    copy_options: CopyOptions = CopyOptions()
    """The copy that seeds the target; ``keep_slot`` is filled in by ``sync`` itself."""
    replica_identity_full: bool = False
    """Consent to ``ALTER TABLE .. REPLICA IDENTITY FULL`` on tables without a usable key."""
    streaming_timeout_s: float = Field(default=60.0, gt=0)
    """How long to wait for the subscription's worker to start streaming."""
    unlogged: Literal["refuse", "copy-at-cutover"] = "refuse"
    """What to do with unlogged tables, which replication cannot carry (:mod:`.unlogged`)."""
    source_as_seen_by_target: str | None = None
    """HOST[:PORT] by which the target server reaches the source, when not the runner's."""
    subscription_sslmode: str | None = None
    """The subscription's sslmode, when not the runner's (see
    :func:`~rdsmigrate.online.replication.subscription_source`)."""

    @property
    def state_dir(self) -> Path:
        return self.copy_options.state_dir


class StatusOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
    retained_wal_warn_bytes: int = Field(default=DEFAULT_RETAINED_WAL_WARN_BYTES, ge=0)
    lag_probe_s: float = Field(default=DEFAULT_LAG_PROBE_S, gt=0, le=600)
    """How long to wait for the target to confirm the probed position before reporting the lag
    as "more than" this."""
    safe_wal_min_fraction: float = Field(default=DEFAULT_SAFE_WAL_MIN_FRACTION, ge=0, le=1)
    """With a bounded ``max_slot_wal_keep_size``: at risk below this share of it left."""


class CutoverOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
    max_lag_bytes: int = Field(default=DEFAULT_MAX_LAG_BYTES, ge=0)
    """Refuse to freeze the source while the target is further behind than this."""
    timeout_s: float = Field(default=60.0, gt=0)
    """How long the frozen source waits for the target to apply its last changes."""
    verify: Literal["counts", "full", "none"] = "counts"
    jobs: int = Field(default=4, ge=1, le=64)
    """Workers of ``--verify full``."""


class AbortOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    state_dir: Path = DEFAULT_STATE_DIR
