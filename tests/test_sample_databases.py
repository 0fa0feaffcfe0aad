"""Each public sample database under ../shared/data migrates with `copy`, and `verify` agrees.

An independent check (tests/dbcheck.py, no rdsmigrate code) confirms the row count and contents
of every table, every sequence, and the count of indexes, constraints, triggers, policies, views,
functions and types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.conftest import SHARED_DATA, create_database, drop_database, psql_file
from tests.dbcheck import assert_same

pytestmark = [pytest.mark.pg, pytest.mark.slow]


@dataclass(frozen=True)
class Sample:
    name: str
    files: tuple[str, ...]
    creates_database: str | None = None
    """Some scripts create and connect to their own database (chinook)."""
    needs_roles: bool = False


SAMPLES = [
    Sample("pagila", ("pagila/pagila-schema.sql", "pagila/pagila-data.sql")),
    Sample("chinook", ("chinook/Chinook_PostgreSql.sql",), creates_database="chinook"),
    Sample("chinook_identity", ("chinook/Chinook_PostgreSql_AutoIncrementPKs.sql",),
           creates_database="chinook_auto_increment"),
    Sample("northwind", ("northwind/northwind.sql",)),
    Sample("employee", ("employee/employee.sql",)),
    Sample("kitchen_sink", (
        "graphile_kitchen_sink/kitchen-sink-schema.sql",
        "graphile_kitchen_sink/kitchen-sink-permissions.sql",
        "graphile_kitchen_sink/partitioned-schema.sql",
        "graphile_kitchen_sink/pg11-schema.sql",
        "graphile_kitchen_sink/kitchen-sink-data.sql",
        "graphile_kitchen_sink/partitioned-data.sql",
        "graphile_kitchen_sink/pg11-data.sql",
    ), needs_roles=True),
]


def ensure_roles(cluster: LocalCluster) -> None:
    """The kitchen sink's cluster-wide roles, once per cluster (policies and grants name them)."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgraphile_test_visitor'").fetchone():
            return
    psql_file(cluster, "postgres", SHARED_DATA / "graphile_kitchen_sink" / "roles.sql")


def load(cluster: LocalCluster, sample: Sample) -> str:
    if sample.needs_roles:
        ensure_roles(cluster)
    if sample.creates_database:
        for path in sample.files:
            psql_file(cluster, "postgres", SHARED_DATA / path)
        return sample.creates_database
    name = create_database(cluster, sample.name)
    for path in sample.files:
        psql_file(cluster, name, SHARED_DATA / path)
    return name


@pytest.fixture
def loaded(request: pytest.FixtureRequest, pg_source: LocalCluster) -> Iterator[str]:
    sample: Sample = request.param
    name = load(pg_source, sample)
    yield name
    drop_database(pg_source, name)


def migrate_and_verify(source: LocalCluster, source_db: str, target: LocalCluster, target_db: str,
                       tmp_path: Path, *extra: str) -> dict[str, object]:
    runner = CliRunner()
    copied = runner.invoke(app, [
        "copy", "-s", source.url(source_db), "-t", target.url(target_db), "--jobs", "2",
        "--state-dir", str(tmp_path / "state"), "--json", *extra,
    ])
    assert copied.exit_code == 0, copied.output
    verified = runner.invoke(app, [
        "verify", "-s", source.url(source_db), "-t", target.url(target_db), "--jobs", "2", "--json",
    ])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["result"]["identical"] is True
    report: dict[str, object] = json.loads(copied.stdout)["result"]
    return report


@pytest.mark.parametrize("loaded", SAMPLES, ids=[s.name for s in SAMPLES], indirect=True)
def test_sample_database_migrates_and_verifies(
    loaded: str, pg_source: LocalCluster, pg_target: LocalCluster, target_db: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    sample = request.node.callspec.params["loaded"]
    extra: tuple[str, ...] = ()
    if sample.needs_roles:
        ensure_roles(pg_target)
        extra = ("--roles",)
    report = migrate_and_verify(pg_source, loaded, pg_target, target_db, tmp_path, *extra)
    fingerprints = assert_same(pg_source.dsn(loaded), pg_target.dsn(target_db))
    assert sum(rows for rows, _ in fingerprints.values()) > 0
    assert report["rows"] == sum(rows for name, (rows, _) in fingerprints.items()
                                 if not _is_matview(pg_source, loaded, name))


def _is_matview(cluster: LocalCluster, db: str, name: str) -> bool:
    with psycopg.connect(cluster.dsn(db)) as conn:
        row = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [name]).fetchone()
    return row is not None and row[0] == "m"


def test_pagila_from_postgresql_15_to_18(
    pg_source: LocalCluster, pg18_target: LocalCluster, tmp_path: Path
) -> None:
    """Development on 15, staging on 18: text COPY across majors, pg_dump 15 output on 18."""
    source_db = load(pg_source, SAMPLES[0])
    target_db = create_database(pg18_target, "pagila18")
    try:
        report = migrate_and_verify(pg_source, source_db, pg18_target, target_db, tmp_path)
        assert all(t["method"].startswith("text") for t in report["tables"])  # type: ignore[attr-defined,index]
        assert_same(pg_source.dsn(source_db), pg18_target.dsn(target_db))
    finally:
        drop_database(pg_source, source_db)
        drop_database(pg18_target, target_db)

