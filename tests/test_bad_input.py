"""Every bad input the issue lists, through the real command line, for ``preflight`` and ``copy``.

Each must end the same way: exit 2, exactly one ``error:`` line on stderr that names the problem
and its fix, no traceback, no password anywhere in the output, and both databases exactly as they
were (relations, large objects, settings, extensions, publications, slots, subscriptions,
databases and roles, read independently of the code under test).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rdsmigrate import preflight
from rdsmigrate.cli import app
from rdsmigrate.db import connect as connect_module
from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster, find_bindir, free_port
from rdsmigrate.settings import CopyOptions
from tests.conftest import admin, create_database, drop_database
from tests.test_preflight import PG15_BINDIR, _extension_missing_on, fingerprint, login_role


@dataclass
class Scenario:
    source: str
    target: str
    expect: tuple[str, ...]
    """Fragments of the one error line: the problem, then the fix."""
    watched: list[tuple[LocalCluster, str]]
    secrets: list[str]
    env: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Setup:
    """What a scenario may build on; ``stack`` undoes what it creates."""

    pg_source: LocalCluster
    source_db: str
    pg_target: LocalCluster
    target_db: str
    request: pytest.FixtureRequest
    stack: ExitStack

    def pg18_db(self) -> tuple[LocalCluster, str]:
        cluster: LocalCluster = self.request.getfixturevalue("pg18_target")
        name = create_database(cluster, "bad18")
        self.stack.callback(drop_database, cluster, name)
        return cluster, name

    @property
    def both(self) -> list[tuple[LocalCluster, str]]:
        return [(self.pg_source, self.source_db), (self.pg_target, self.target_db)]

    @property
    def cluster_secrets(self) -> list[str]:
        return [self.pg_source.password, self.pg_target.password]


def _unreachable_host(s: Setup) -> Scenario:
    password = "unreachable-" + secrets.token_hex(6)
    url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/{s.source_db}?sslmode=disable"
    return Scenario(url, s.pg_target.url(s.target_db),
                    ("source", "cannot reach the server", "check host and port"),
                    s.both, [*s.cluster_secrets, password])


def _wrong_password(s: Setup) -> Scenario:
    password = "wrong-" + secrets.token_hex(6)
    url = s.pg_source.url(s.source_db).replace(s.pg_source.password, password)
    return Scenario(url, s.pg_target.url(s.target_db),
                    ("password authentication failed for user postgres", "fix the password"),
                    s.both, [*s.cluster_secrets, password])


def _missing_database(s: Setup) -> Scenario:
    missing = f"no_such_db_{os.getpid()}"
    return Scenario(s.pg_source.url(s.source_db), s.pg_target.url(missing),
                    (f"database '{missing}' does not exist", f"createdb {missing}"),
                    [*s.both, (s.pg_target, missing)], s.cluster_secrets)


def _missing_privileges(s: Setup) -> Scenario:
    with admin(s.pg_source, s.source_db) as conn:
        conn.execute("CREATE TABLE secret (id int PRIMARY KEY); INSERT INTO secret VALUES (1)")
    # REPLICATION granted, so the only thing missing is the right to read the table.
    role, dsn = s.stack.enter_context(login_role(s.pg_source, s.source_db, replication=True))
    password = dsn.split("password=")[1].split()[0]
    return Scenario(dsn, s.pg_target.url(s.target_db),
                    (f"source user {role} cannot read 1 of the 1 tables",
                     "table public.secret", "GRANT SELECT ON ALL TABLES IN SCHEMA public"),
                    s.both, [*s.cluster_secrets, password])


def _non_empty_target(s: Setup) -> Scenario:
    with admin(s.pg_target, s.target_db) as conn:
        conn.execute("CREATE TABLE already_here (id int)")
    return Scenario(s.pg_source.url(s.source_db), s.pg_target.url(s.target_db),
                    (f"target database {s.target_db} is not empty", "--replace"),
                    s.both, s.cluster_secrets)


def _extension_missing(s: Setup) -> Scenario:
    cluster, db = s.pg18_db()
    extension = _extension_missing_on(s.pg_source, s.source_db, cluster)
    return Scenario(s.pg_source.url(s.source_db), cluster.url(db),
                    (f"extension(s) {extension} used on the source are not available",
                     "install their packages on the target host"),
                    [(s.pg_source, s.source_db), (cluster, db)],
                    [*s.cluster_secrets, cluster.password])


def _pg_dump_older_than_source(s: Setup) -> Scenario:
    cluster, db = s.pg18_db()
    with admin(cluster, db) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    return Scenario(cluster.url(db), s.pg_target.url(s.target_db),
                    ("pg_dump 18 or newer is needed for a PostgreSQL 18 source",
                     "install postgresql-client-18"),
                    [(cluster, db), (s.pg_target, s.target_db)],
                    [*s.cluster_secrets, cluster.password],
                    env={"RDSMIGRATE_PG_BINDIR": PG15_BINDIR})


SCENARIOS: dict[str, Callable[[Setup], Scenario]] = {
    "unreachable host": _unreachable_host,
    "wrong password": _wrong_password,
    "missing database": _missing_database,
    "missing privileges": _missing_privileges,
    "non-empty target": _non_empty_target,
    "extension missing on target": _extension_missing,
    "pg_dump older than source": _pg_dump_older_than_source,
}


@pytest.fixture
def setup(pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
          request: pytest.FixtureRequest) -> Iterator[Setup]:
    with ExitStack() as stack:
        yield Setup(pg_source, source_db, pg_target, target_db, request, stack)


def _fingerprints(watched: list[tuple[LocalCluster, str]]) -> list[dict[str, Any]]:
    return [fingerprint(cluster, db) for cluster, db in watched]


@pytest.mark.parametrize("command", ["preflight", "copy"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_bad_input_is_one_line_with_the_fix_exit_2_and_changes_nothing(
    setup: Setup, scenario: str, command: str, tmp_path: Path,
) -> None:
    case = SCENARIOS[scenario](setup)
    before = _fingerprints(case.watched)
    args = [command, "--source", case.source, "--target", case.target]
    if command == "copy":
        args += ["--jobs", "1", "--state-dir", str(tmp_path / "state"),
                 "--report", str(tmp_path / "report.json")]
    env = {"RDSMIGRATE_PG_BINDIR": None, "RDSMIGRATE_SOURCE": None, "RDSMIGRATE_TARGET": None,
           **case.env}

    result = CliRunner().invoke(app, args, env=env)

    output = result.stdout + result.stderr
    assert result.exit_code == 2, output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in case.expect:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in output and "internal error" not in output
    for secret in case.secrets:
        assert secret not in output
    assert _fingerprints(case.watched) == before


# --- Why a connection failed: each cause with its own fix ----------------------------------

_HBA = """\
local all all scram-sha-256
host all rejected 127.0.0.1/32 reject
hostssl all tlsonly 127.0.0.1/32 scram-sha-256
host all postgres,norepl 127.0.0.1/32 scram-sha-256
host all trusting 127.0.0.1/32 trust
host replication postgres 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def hba_cluster() -> Iterator[LocalCluster]:
    """A server whose pg_hba.conf rejects one user, lets another in only over TLS (which this
    server, without a certificate, cannot offer), knows no line for a third, admits a user
    without REPLICATION, and trusts one without asking its password."""
    with LocalCluster(bindir=find_bindir(15), name="hba") as cluster:
        with admin(cluster) as conn:
            for role in ("rejected", "tlsonly", "nobody", "norepl", "trusting"):
                conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
            conn.execute("ALTER ROLE trusting REPLICATION")
            (cluster.datadir / "pg_hba.conf").write_text(_HBA)
            conn.execute("SELECT pg_reload_conf()")
        yield cluster


def _failure(dsn: str, **kwargs: Any) -> UserError:
    endpoint = Endpoint.parse("source", dsn)
    with pytest.raises(UserError) as caught:
        connect(endpoint, **kwargs).close()
    return caught.value


def _as(cluster: LocalCluster, user: str, **extra: str) -> str:
    params = {"host": "127.0.0.1", "port": str(cluster.port), "dbname": "postgres",
              "user": user, "password": f"pw-{user}", "sslmode": "disable", **extra}
    return " ".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.parametrize(("case", "problem", "fix"), [
    ("walsender", "user norepl may not open a replication connection",
     "ALTER ROLE norepl REPLICATION; (on RDS: GRANT rds_replication TO norepl;)"),
    ("password", "password authentication failed for user norepl", "fix the password"),
    ("database", "database 'no_such_db' does not exist", "createdb no_such_db"),
    ("no hba entry", "pg_hba.conf has no entry for this host, user nobody", "host postgres nobody"),
    ("hba reject", "pg_hba.conf rejects user rejected", "ask the server's administrator"),
    ("only over TLS", "no entry for an unencrypted connection from this host as tlsonly (the "
     "connection did not try TLS)", "connect with sslmode=require"),
    ("TLS asked, not offered", "does not offer TLS", "sslmode=prefer"),
    ("refused", "cannot reach the server: nothing accepts connections at 127.0.0.1:",
     "that the server is running"),
    ("DNS", "host name no-such-host.invalid does not resolve", "check host and port"),
    ("timeout", "cannot reach the server: no answer from 127.0.0.1:", "security groups"),
])
def test_each_connection_failure_names_its_cause_and_fix(
    hba_cluster: LocalCluster, case: str, problem: str, fix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = hba_cluster
    kwargs: dict[str, Any] = {}
    with ExitStack() as stack:
        if case == "walsender":
            dsn, kwargs = _as(c, "norepl"), {"replication": "database"}
        elif case == "password":
            dsn = _as(c, "norepl").replace("pw-norepl", "wrong")
        elif case == "database":
            dsn = _as(c, "norepl", dbname="no_such_db")
        elif case == "no hba entry":
            # sslmode=prefer: libpq would have tried TLS first had the server offered it.
            dsn = _as(c, "nobody", sslmode="prefer")
        elif case == "hba reject":
            dsn = _as(c, "rejected")
        elif case == "only over TLS":
            dsn = _as(c, "tlsonly")
        elif case == "TLS asked, not offered":
            dsn = _as(c, "norepl", sslmode="require")
        elif case == "refused":
            dsn = _as(c, "norepl", port=str(free_port()))
        elif case == "DNS":
            dsn = _as(c, "norepl", host="no-such-host.invalid")
        else:
            # A socket that listens but never answers: what a firewall dropping packets looks
            # like from here. libpq's shortest connect_timeout is 2 s.
            silent = stack.enter_context(socket.socket())
            silent.bind(("127.0.0.1", 0))
            silent.listen(0)
            monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_S", 2)
            dsn = _as(c, "norepl", port=str(silent.getsockname()[1]))
        error = _failure(dsn, **kwargs)
    line = str(error)
    assert error.problem.startswith("source ")
    assert problem in error.problem and error.fix is not None and fix in error.fix, line
    if case not in ("refused", "DNS", "timeout"):
        assert "cannot reach" not in line and "check host and port" not in line
    assert "pw-" not in line and "\n" not in line


def test_pg18_names_a_walsender_refusal_too(pg18_target: LocalCluster) -> None:
    """PostgreSQL 16+ words it "permission denied to start WAL sender"."""
    with admin(pg18_target) as conn:
        conn.execute("CREATE ROLE norepl18 LOGIN PASSWORD 'pw-norepl18'")
    try:
        error = _failure(_as(pg18_target, "norepl18"), replication="database")
        assert "may not open a replication connection" in error.problem
        assert error.fix is not None and "ALTER ROLE norepl18 REPLICATION;" in error.fix
    finally:
        with admin(pg18_target) as conn:
            conn.execute("DROP ROLE norepl18")


def test_sync_refuses_a_source_that_never_asks_the_subscription_for_its_password(
    hba_cluster: LocalCluster, pg18_target: LocalCluster,
) -> None:
    """PostgreSQL 16+ refuses a non-superuser's subscription whose connection used no password,
    even one given: preflight tells it from the session libpq opened (PQconnectionUsedPassword)."""
    target = create_database(pg18_target, "trust18")
    try:
        report = preflight.run(Endpoint.parse("source", _as(hba_cluster, "trusting")),
                               Endpoint.parse("target", pg18_target.dsn(target)),
                               CopyOptions(keep_slot="rdsmigrate_x"))
        assert [f.code for f in report.blockers] == ["subscription-password"]
        assert "does not ask trusting for a password" in report.blockers[0].problem
        assert "scram-sha-256, not trust" in str(report.blockers[0].fix)
    finally:
        drop_database(pg18_target, target)
