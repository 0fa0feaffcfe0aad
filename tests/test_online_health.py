"""The online path's health on real clusters: unlogged tables, names with spaces, and ``status``
exiting non-zero, with a documented code, in each unhealthy state.

The source side connects as a non-superuser with REPLICATION (as RDS's master user with
``rds_replication``): its publication lists tables, which is where unlogged tables and schema
names with spaces used to break ``sync``.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.dbcheck import assert_same

pytestmark = [pytest.mark.pg, pytest.mark.slow]

_roles = itertools.count()


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@dataclass
class Pair:
    """A source database owned by a non-superuser migration role, and a target database."""

    source: LocalCluster
    source_db: str
    role: str
    password: str
    target: LocalCluster
    target_db: str
    state: Path

    @property
    def source_url(self) -> str:
        return (f"postgresql://{self.role}:{self.password}@127.0.0.1:{self.source.port}/"
                f"{self.source_db}?sslmode=disable")

    def args(self) -> list[str]:
        return ["--source", self.source_url, "--target", self.target.url(self.target_db),
                "--state-dir", str(self.state)]

    def src(self) -> psycopg.Connection[Any]:
        """As the migration role (the application's writes)."""
        return psycopg.connect(self.source_url, autocommit=True)

    def src_admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.source.dsn(self.source_db), autocommit=True)

    def tgt(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target.dsn(self.target_db), autocommit=True)


@pytest.fixture
def pair(pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
         tmp_path: Path) -> Iterator[Pair]:
    role = f"mig_{os.getpid()}_{next(_roles)}"
    password = secrets.token_urlsafe(12)
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}'")
        # As RDS's master user: owns the database, may end other sessions (the freeze does).
        conn.execute(f'ALTER DATABASE "{source_db}" OWNER TO {role}')
        conn.execute(f"GRANT pg_signal_backend TO {role}")
    yield Pair(pg_source, source_db, role, password, pg_target, target_db, tmp_path / "state")
    _cli("abort", *Pair(pg_source, source_db, role, password, pg_target, target_db,
                        tmp_path / "state").args())
    with psycopg.connect(pg_source.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def _ours(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE database = current_database()"
        " UNION ALL SELECT 'publication ' || pubname FROM pg_publication "
        " UNION ALL SELECT 'subscription ' || subname FROM pg_subscription").fetchall()]


# --- unlogged tables --------------------------------------------------------------------------

def test_sync_refuses_unlogged_tables_naming_the_choices_and_creates_nothing(pair: Pair) -> None:
    with pair.src() as src:
        src.execute("CREATE TABLE kept (id int PRIMARY KEY, v text);"
                    "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);"
                    "INSERT INTO kept VALUES (1, 'a'); INSERT INTO scratch VALUES (1, 'b')")
    refused = _cli("sync", *pair.args())
    assert refused.exit_code == 2, refused.output
    message = refused.stderr
    assert "unlogged" in message and "public.scratch" in message and "public.kept" not in message
    assert "ALTER TABLE public.scratch SET LOGGED" in message
    assert "--exclude-table public.scratch" in message
    assert "--unlogged copy-at-cutover" in message
    with pair.src_admin() as src, pair.tgt() as tgt:
        assert _ours(src) == [] and _ours(tgt) == []
        assert tgt.execute("SELECT count(*) FROM pg_class WHERE relname IN ('kept', 'scratch')"
                           ).fetchone() == (0,)

    # The first choice works as printed.
    with pair.src() as src:
        src.execute("ALTER TABLE public.scratch SET LOGGED")
    synced = _cli("sync", *pair.args(), "--json")
    assert synced.exit_code == 0, synced.output
    with pair.src() as src:
        src.execute("UPDATE scratch SET v = 'after sync'")
    cut = _cli("cutover", *pair.args(), "--json")
    assert cut.exit_code == 0, cut.output
    with pair.tgt() as tgt:
        assert tgt.execute("SELECT v FROM scratch").fetchone() == ("after sync",)


def test_unlogged_copy_at_cutover_carries_changes_made_after_sync_and_counts_them(
        pair: Pair) -> None:
    with pair.src() as src:
        src.execute("CREATE TABLE kept (id int PRIMARY KEY, v text);"
                    "INSERT INTO kept SELECT g, 'k' FROM generate_series(1, 100) g;"
                    "CREATE UNLOGGED TABLE parent (id int PRIMARY KEY, v text);"
                    "CREATE UNLOGGED TABLE child (id int PRIMARY KEY,"
                    "                             parent int REFERENCES parent, note text);"
                    "INSERT INTO parent SELECT g, 'before' FROM generate_series(1, 50) g;"
                    "INSERT INTO child SELECT g, g, 'c' FROM generate_series(1, 50) g")
    synced = _cli("sync", *pair.args(), "--unlogged", "copy-at-cutover", "--json")
    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.stdout)
    assert sorted(report["unlogged_at_cutover"]) == ["public.child", "public.parent"]
    assert report["tables"] == 1  # only `kept` is replicated

    with pair.src() as src:
        # An UPDATE leaves the counts alone: only a copy at the cutover carries it.
        src.execute("UPDATE parent SET v = 'after sync' WHERE id <= 10;"
                    "INSERT INTO parent VALUES (51, 'new'); INSERT INTO child VALUES (51, 51, 'n');"
                    "DELETE FROM child WHERE id = 1; UPDATE kept SET v = 'k2' WHERE id = 1")
    cut = _cli("cutover", *pair.args(), "--json")
    assert cut.exit_code == 0, cut.output
    done = json.loads(cut.stdout)
    assert done["unlogged_tables"] == 2 and done["unlogged_rows"] == 51 + 50
    assert done["tables_checked"] == 3  # counted with every other table
    assert "unlogged tables" in done["steps"]
    assert_same(pair.source.dsn(pair.source_db), pair.target.dsn(pair.target_db))
    with pair.tgt() as tgt:
        assert tgt.execute("SELECT count(*) FROM parent WHERE v = 'after sync'").fetchone() == (10,)


def test_a_schema_and_table_named_with_spaces_go_through_sync_and_cutover(pair: Pair) -> None:
    with pair.src() as src:
        src.execute('CREATE SCHEMA "my app";'
                    'CREATE TABLE "my app"."order lines" (id int PRIMARY KEY, v text UNIQUE);'
                    'CREATE INDEX "by v" ON "my app"."order lines" (v);'
                    """INSERT INTO "my app"."order lines" SELECT g, 'v' || g
                         FROM generate_series(1, 200) g""")
    synced = _cli("sync", *pair.args(), "--json")
    assert synced.exit_code == 0, synced.output
    with pair.src() as src:
        src.execute("""UPDATE "my app"."order lines" SET v = v || '!' WHERE id % 2 = 0""")
    cut = _cli("cutover", *pair.args(), "--json")
    assert cut.exit_code == 0, cut.output
    assert_same(pair.source.dsn(pair.source_db), pair.target.dsn(pair.target_db))
    with pair.tgt() as tgt:
        # The per-table index build found its table by oid: the index is there, and valid.
        assert tgt.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = "
                           "i.indexrelid WHERE c.relname IN ('by v', 'order lines_pkey', "
                           "'order lines_v_key') AND i.indisvalid").fetchone() == (3,)
