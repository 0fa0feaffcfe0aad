"""Typed options of each command, validated once at the edge (the CLI) before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Selection(BaseModel):
    """Which tables a command works on, as the user wrote the patterns; what they mean, and the
    one place that matches them (against the source), is :mod:`rdsmigrate.db.selection`."""

    model_config = ConfigDict(frozen=True)

    schemas: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()


class CopyOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    jobs: int = Field(default=4, ge=1, le=64)
    selection: Selection = Selection()
    resume: bool = False
    replace: bool = False
    """Drop and recreate the target's objects of the same name instead of refusing a non-empty target."""
    roles: bool = False
    report_path: Path | None = None
    state_dir: Path = Path(".rdsmigrate")
    split_bytes: int | None = Field(default=None, ge=1)
    """None: split only tables bigger than one worker's share of the copy."""
    keep_slot: str | None = None
    """Name of a persistent logical slot to create for the snapshot and leave in place, so that
    replication (``sync``) streams changes from exactly the copy's instant."""
    unlogged_at_cutover: bool = False
    """``sync --unlogged copy-at-cutover``: unlogged tables, which replication cannot carry, are
    copied again by the cutover, so they do not block the online prerequisites."""


class VerifyOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    jobs: int = Field(default=4, ge=1, le=64)
    selection: Selection = Selection()
    chunk_rows: int = Field(default=100_000, ge=1)
    roles: bool = False
    """Also compare large objects' owners and grants, which only ``copy --roles`` carries."""
    checksum: Literal["auto", "md5"] = "auto"
    """auto: ``hash_record_extended`` when both servers agree on it, else md5 (see
    rdsmigrate.verify.rowhash); md5: always the slower md5 of each row's text."""
