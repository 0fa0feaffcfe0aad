"""What the online migration has done, recorded on the target server itself.

Every online command reads and writes one row of ``rdsmigrate.migration`` on the target (one row
per migration, the whole record as JSON), so each command works from any machine and from an
empty ``--state-dir`` (a fresh container): the servers are the truth, and the JSON file in the
state directory is only a cache written beside it for people to read.

Why the target: it is where the subscription lives, it stays reachable after the cutover (the
source may be retired), and a change of the record can share a transaction with the step it
records: the subscription is dropped and the record says "detached" in one commit, so no crash
can leave a detached target recorded as a live replica (``abort`` would then reopen the source:
two writable copies). The source keeps no record of its own: the freeze
(``default_transaction_read_only`` at database level, see :mod:`.freeze`) is its only mark.

Each command records a step *before* the action a crash could leave half done (the name of the
objects before any exists, "frozen" before the freeze) and *after* the ones that only count when
complete ("copied", "verified"); a rerun reads the steps and the servers' state and continues.
The schema ``rdsmigrate`` is the tool's own: the copy, ``verify`` and the emptiness check of the
target leave it out (see :data:`rdsmigrate.db.catalog.TOOL_SCHEMA`).

Every object's name starts with :data:`~rdsmigrate.copy.snapshot.SLOT_PREFIX`, so ``abort`` still
finds the replication objects when the record is gone.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from rdsmigrate.db.catalog import TOOL_SCHEMA
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError

Phase = Literal["syncing", "streaming", "cutting-over", "detached", "cut-over", "aborted"]
"""``detached``: the cutover dropped the subscription (the target is on its own and may take the
application's writes) but has not yet removed the slot and publication or stored its report."""

TABLE = sql.Identifier(TOOL_SCHEMA, "migration")


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
    """Tables whose replica identity ``sync`` set to FULL, with the user's consent."""
    roles: bool = False
    """``sync --roles``: cutover copies large objects again with their owners and grants."""
    unlogged_at_cutover: list[str] = Field(default_factory=list)
    """Unlogged tables left out of replication, copied again by the cutover (``--unlogged``)."""
    publication_scope: str = "FOR TABLE list"
    phase: Phase = "syncing"
    steps: list[str] = Field(default_factory=list)
    """Steps of the current command's state machine that are done, in order (see sync, cutover)."""
    frozen: bool = False
    """True while this tool has the source's writes frozen (``default_transaction_read_only``)."""
    created_at: float = Field(default_factory=time.time)
    copy_report: dict[str, Any] | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    """The cutover's results so far (final LSN, sequences set, rows counted, the freeze's time),
    so that a rerun after an interruption reports the whole cutover."""
    cutover: dict[str, Any] | None = None
    """The finished cutover's report, shown again by a rerun of ``cutover``."""

    @property
    def detached(self) -> bool:
        """The cutover dropped the subscription: never unfreeze the source as a side effect."""
        return self.phase in ("detached", "cut-over")

    def done(self, step: str) -> bool:
        return step in self.steps

    def mark(self, step: str) -> None:
        if step not in self.steps:
            self.steps.append(step)


def ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(TOOL_SCHEMA)))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, record jsonb NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now())").format(TABLE))
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(TABLE, sql.Literal(
        "rdsmigrate's record of its online migrations into this database (one row each); "
        "drop the schema rdsmigrate once the migration is over and nothing needs it")))


def save(conn: psycopg.Connection[Any], record: OnlineState, cache: Path | None = None) -> None:
    """Upsert the record on the target (one statement: atomic, or part of the caller's
    transaction), then refresh the local cache file."""
    conn.execute(sql.SQL(
        "INSERT INTO {} (name, record) VALUES (%s, %s::jsonb) ON CONFLICT (name) DO UPDATE "
        "SET record = EXCLUDED.record, updated_at = now()").format(TABLE),
        [record.name, record.model_dump_json()])
    if cache is not None:
        write_cache(cache, record)


def write_cache(path: Path, record: OnlineState) -> None:
    """Replaced atomically (written beside, fsync'ed, renamed): the old copy or the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(record.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        pass  # only a cache: the record on the target is what counts


def location(state_dir: Path, target: Endpoint) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{target.host}_{target.port}_{target.dbname}")
    return state_dir / f"online-{stem}.json"


def latest(conn: psycopg.Connection[Any], *, include_aborted: bool = False) -> OnlineState | None:
    """The most recent migration recorded in the target database, else the record an older
    version kept as the subscription's comment (``obj_description``: a subscription's comment
    lives in ``pg_description``, although ``pg_subscription`` is a shared catalog)."""
    exists = conn.execute("SELECT to_regclass(%s)", [f"{TOOL_SCHEMA}.migration"]).fetchone()
    if exists and exists[0] is not None:
        try:
            rows = conn.execute(sql.SQL(
                "SELECT record::text FROM {} ORDER BY (record->>'created_at')::float8 DESC, "
                "updated_at DESC").format(TABLE)).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            user = conn.info.user
            raise UserError(
                f"the migration record {TOOL_SCHEMA}.migration on the target is not readable by "
                f"{user}: connect as the user that ran sync, or GRANT USAGE ON SCHEMA "
                f"{TOOL_SCHEMA}, SELECT, INSERT, UPDATE ON {TOOL_SCHEMA}.migration TO {user}"
            ) from None
        for (text,) in rows:
            record = OnlineState.model_validate_json(text)
            if include_aborted or record.phase != "aborted":
                return record
    from rdsmigrate.online.replication import NAME_LIKE

    comments = conn.execute(
        "SELECT s.subname, obj_description(s.oid, 'pg_subscription') FROM pg_subscription s "
        "WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND s.subname LIKE %s ORDER BY 1", [NAME_LIKE]).fetchall()
    for _name, comment in comments:
        try:
            return OnlineState.model_validate(json.loads(comment or ""))
        except ValueError:
            continue
    return None
