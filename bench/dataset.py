"""The benchmark's clusters and the dataset on the source.

Both clusters get identical settings (the throwaway defaults of ``rdsmigrate.localpg`` plus
``EXTRA_SETTINGS``) and one shared password, so every program can take it from ``PGPASSWORD``
instead of its command line. The dataset is what issue 4 names: ``pgbench -i --foreign-keys``
(row-heavy, narrow rows, four tables linked by foreign keys) and ``payments``, a wide table of
mixed types whose values are derived from the row number, so every build is byte-for-byte the
same and a failed verification is reproducible.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import manytables
from rdsmigrate.localpg import DEFAULT_SETTINGS, LocalCluster

DBNAME = "bench"
PAYMENTS_PER_SCALE = 50_000
"""Rows of ``payments`` per pgbench scale unit: 2 M at the default scale 40."""

# None of the defaults need changing for a fair race: both clusters get the same ones. Kept as
# a dict so a future tuning shows up in the report's settings list.
EXTRA_SETTINGS: dict[str, str] = {}
# Durable (the default since issue 13): what an RDS instance runs with; the test clusters'
# defaults turn these off. shared_buffers as a small RDS instance class gives it (a quarter of
# its memory, rounded down); wal_level stays logical on both, as an RDS target for `sync` has.
DURABLE_SETTINGS: dict[str, str] = {"fsync": "on", "synchronous_commit": "on",
                                    "full_page_writes": "on", "shared_buffers": "512MB"}


def extra_settings(durable: bool, more: dict[str, str] | None = None) -> dict[str, str]:
    return {**EXTRA_SETTINGS, **(DURABLE_SETTINGS if durable else {}), **(more or {})}
REPORTED_SETTINGS = (
    "server_version", "shared_buffers", "maintenance_work_mem", "work_mem", "max_wal_size",
    "fsync", "synchronous_commit", "full_page_writes", "wal_level", "max_parallel_workers",
    "max_parallel_maintenance_workers", "effective_io_concurrency", "max_locks_per_transaction",
)

PAYMENTS_DDL = """
CREATE TABLE payments (
    id          bigint PRIMARY KEY,
    payment_uid uuid NOT NULL,
    amount      numeric(14, 2) NOT NULL,
    currency    text NOT NULL,
    note        text,
    details     jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    payload     bytea
)
"""

# ~160 bytes a row on disk: 2 M rows and their three indexes make the ~0.5 GB that bring the
# database to ~1.1 GB at scale 40.
PAYMENTS_FILL = """
INSERT INTO payments
SELECT i,
       md5(i::text)::uuid,
       round((i %% 100000) * 1.37 + (i %% 97) / 100.0, 2),
       (ARRAY['EUR', 'USD', 'GBP', 'JPY'])[1 + i %% 4],
       'order ' || (i * 7919) %% 1000003,
       jsonb_build_object('channel', (ARRAY['web', 'pos', 'api'])[1 + i %% 3], 'items', i %% 7),
       timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => i * 3.7),
       decode(md5(i::text), 'hex')
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

PAYMENTS_INDEXES = (
    "CREATE UNIQUE INDEX payments_payment_uid_key ON payments (payment_uid)",
    "CREATE INDEX payments_created_at_idx ON payments (created_at)",
)


def start_clusters(bindir: Path, durable: bool = False,
                   more: dict[str, str] | None = None) -> tuple[LocalCluster, LocalCluster]:
    """Source and target, same settings and password; the caller stops them (``stop_all``)."""
    password = secrets.token_urlsafe(18)
    started: list[LocalCluster] = []
    try:
        for name in ("bench-src", "bench-tgt"):
            cluster = LocalCluster(bindir=bindir, name=name, settings=extra_settings(durable, more),
                                   password=password)
            started.append(cluster)
            cluster.start()
    except BaseException:
        stop_all(started)
        raise
    return started[0], started[1]


def postmaster_pid(cluster: LocalCluster) -> int:
    """The server's main process, whose children are its backends (for their CPU)."""
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0])


def stop_all(clusters: list[LocalCluster]) -> None:
    for cluster in clusters:
        cluster.stop()


def tool_env(cluster: LocalCluster) -> dict[str, str]:
    """Environment for client programs: password and a C locale, nothing on the command line."""
    env = {**os.environ, "PGPASSWORD": cluster.password, "LC_ALL": "C.UTF-8"}
    for var in ("PGDATABASE", "PGHOST", "PGPORT", "PGUSER", "PGSERVICE"):
        env.pop(var, None)
    return env


def connect(cluster: LocalCluster, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.dsn(dbname), autocommit=True)


def program(cluster: LocalCluster, name: str) -> str:
    """A client program of the cluster's own installation, else the one on PATH."""
    own = cluster.bindir / name
    found = str(own) if own.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (it comes with the PostgreSQL client)")
    return found


def settings_of(cluster: LocalCluster) -> dict[str, str]:
    with connect(cluster) as conn:
        rows = conn.execute(
            "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings "
            "WHERE name = ANY(%s) ORDER BY name", [list(REPORTED_SETTINGS)]).fetchall()
    return {str(k): str(v) for k, v in rows}


def configured_settings(durable: bool = False,
                        more: dict[str, str] | None = None) -> dict[str, str]:
    """What both clusters' postgresql.auto.conf says, as the report prints it."""
    return {k: v.strip("'")
            for k, v in {**DEFAULT_SETTINGS, **extra_settings(durable, more)}.items()}


def build(cluster: LocalCluster, scale: int, payments_rows: int) -> None:
    """Create ``bench`` on the source and fill it; VACUUM ANALYZE so every contender reads the
    same all-visible, hinted pages (no contender pays for setting hint bits)."""
    with connect(cluster) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    subprocess.run(
        [program(cluster, "pgbench"), "-i", "-q", "-s", str(scale), "--foreign-keys",
         "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", DBNAME],
        env=tool_env(cluster), check=True, capture_output=True)
    with connect(cluster, DBNAME) as conn:
        conn.execute(PAYMENTS_DDL)
        step = 500_000
        for first in range(1, payments_rows + 1, step):
            conn.execute(PAYMENTS_FILL, {"first": first,
                                         "last": min(payments_rows, first + step - 1)})
        for ddl in PAYMENTS_INDEXES:
            conn.execute(ddl)
        conn.execute("VACUUM (FREEZE, ANALYZE)")


def build_tables(cluster: LocalCluster, tables: int) -> None:
    """Create ``bench`` on the source with the many-tables dataset (``bench.manytables``)."""
    with connect(cluster) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    with connect(cluster, DBNAME) as conn:
        manytables.build(conn, tables)


def database_bytes(cluster: LocalCluster, dbname: str = DBNAME) -> int:
    with connect(cluster) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", [dbname]).fetchone()
    assert row is not None
    return int(row[0])


def recreate(cluster: LocalCluster, dbname: str) -> None:
    with connect(cluster) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def drop(cluster: LocalCluster, dbname: str) -> None:
    with connect(cluster) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def checkpoint(*clusters: LocalCluster) -> None:
    """CHECKPOINT both clusters, then flush the kernel's page cache to disk: with fsync off the
    checkpoint only hands its pages to the kernel, whose writeback would then land in the next
    timed run (the first round after the dataset build was 1-2 s slower for every contender)."""
    for cluster in clusters:
        with connect(cluster) as conn:
            conn.execute("CHECKPOINT")
    os.sync()
