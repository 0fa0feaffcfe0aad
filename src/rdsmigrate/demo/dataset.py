"""The demo's payments database, generated on the server from SQL shipped inside this package.

The SQL (``paymentdb.sql``) is split at its ``-- step: NAME`` lines and run step by step on one
session, so the user sees what is being built and how long each part takes, and the session-only
helpers the first step defines (``pg_temp``) serve all the others. Rows come from
``INSERT .. SELECT generate_series``: no data crosses the network, which is what makes scale 10 a
matter of seconds rather than minutes.

Guarantee: the same scale gives the same database, row for row, whatever the server's time zone
(the steps pin theirs) and whatever the database is called. Database-level settings are added here
rather than in the SQL because ``ALTER DATABASE`` needs the database's name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.progress import Reporter, human_bytes

SQL_FILE = "paymentdb.sql"
STEP_MARKER = "-- step:"
SCALE_SETTING = "rdsmigrate.demo_scale"
PAYMENTS_PER_SCALE = 100_000

# What ``pg_dump`` without ``--create`` leaves behind and a migration must carry over by itself.
DATABASE_SETTINGS: dict[str, str] = {
    "search_path": "payments, public",
    "timezone": "America/New_York",
}


@dataclass(frozen=True)
class Step:
    name: str
    sql: str


class BuildReport(BaseModel):
    """What was built: rows inserted per step, the database's size and the time it took."""

    scale: int
    rows: int
    rows_by_step: dict[str, int]
    database_bytes: int
    seconds: float


def steps() -> list[Step]:
    """The SQL file's steps, in order; text before the first marker is a header comment."""
    text = resources.files("rdsmigrate.demo").joinpath(SQL_FILE).read_text(encoding="utf-8")
    found: list[Step] = []
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(STEP_MARKER):
            if name is not None:
                found.append(Step(name, "\n".join(lines)))
            name, lines = line[len(STEP_MARKER):].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        found.append(Step(name, "\n".join(lines)))
    return found


def build(endpoint: Endpoint, scale: int, reporter: Reporter) -> BuildReport:
    """Create every object and row of the payments database in ``endpoint``'s (empty) database."""
    started = time.monotonic()
    rows_by_step: dict[str, int] = {}
    with connect(endpoint, autocommit=True) as conn:
        conn.execute("SELECT set_config(%s, %s, false)", (SCALE_SETTING, str(scale)))
        for step in steps():
            step_started = time.monotonic()
            rows = _inserted_rows(conn.execute(step.sql))
            rows_by_step[step.name] = rows
            counted = f"{rows:,} rows " if rows else ""
            reporter.info(f"  {step.name}: {counted}in {time.monotonic() - step_started:.1f} s")
        _set_database_settings(conn)
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size is not None
    report = BuildReport(
        scale=scale, rows=sum(rows_by_step.values()), rows_by_step=rows_by_step,
        database_bytes=int(size[0]), seconds=round(time.monotonic() - started, 3),
    )
    reporter.info(f"  {report.rows:,} rows, {human_bytes(report.database_bytes)} "
                  f"in {report.seconds:.1f} s")
    return report


def _inserted_rows(cur: psycopg.Cursor[Any]) -> int:
    """Rows inserted by all the statements of one step (each leaves its own result)."""
    rows = 0
    while True:
        if (cur.statusmessage or "").startswith("INSERT"):
            rows += max(cur.rowcount, 0)
        if not cur.nextset():
            return rows


def _set_database_settings(conn: psycopg.Connection[Any]) -> None:
    dbname = sql.Identifier(conn.info.dbname)
    for name, value in DATABASE_SETTINGS.items():
        # search_path takes a list: SET ... = 'a, b' would make it one schema named "a, b".
        values: sql.Composable
        if name == "search_path":
            values = sql.SQL(", ").join(sql.Identifier(v.strip()) for v in value.split(","))
        else:
            values = sql.Literal(value)
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            dbname, sql.Identifier(name), values))
