"""The online path's health on real clusters: unlogged tables, names with spaces, ``status``
exiting non-zero, with a documented code, in each unhealthy state, and the subscription's view of
the source (its address, a .pgpass password, no local files).

Both sides connect as RDS-like master users (conftest): not superusers, so the publication lists
tables, which is where unlogged tables and schema names with spaces used to break ``sync``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo
from typer.testing import CliRunner, Result

from rdsmigrate import prerequisites
from rdsmigrate.cli import app
from rdsmigrate.errors import (
    EXIT_APPLY_ERRORS,
    EXIT_DDL_DRIFT,
    EXIT_NOT_STREAMING,
    EXIT_SLOT_AT_RISK,
    UserError,
)
from rdsmigrate.localpg import LocalCluster, find_bindir
from rdsmigrate.online import replication
from tests.conftest import (
    RDS_SUPERUSER,
    admin,
    create_database,
    drop_database,
    make_rds_like,
    online_target_dsn,
    online_target_url,
)
from tests.dbcheck import assert_same
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.pg, pytest.mark.slow]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@dataclass
class Pair:
    """A source and a target database, both used as their clusters' RDS-like master user."""

    source: LocalCluster
    source_db: str
    target: LocalCluster
    target_db: str
    state: Path

    @property
    def source_url(self) -> str:
        return self.source.url(self.source_db)

    def args(self) -> list[str]:
        return ["--source", self.source_url, "--target", self.target_url,
                "--state-dir", str(self.state)]

    @property
    def target_url(self) -> str:
        return online_target_url(self.target, self.target_db)

    def src(self) -> psycopg.Connection[Any]:
        """As the master user (the application's writes)."""
        return psycopg.connect(self.source_url, autocommit=True)

    def src_admin(self) -> psycopg.Connection[Any]:
        """As the superuser: server settings and checkpoints, which RDS's user cannot do."""
        return admin(self.source, self.source_db)

    def tgt(self) -> psycopg.Connection[Any]:
        """As the tool's target user (conftest's online rule: superuser on a 15 target)."""
        return psycopg.connect(online_target_dsn(self.target, self.target_db), autocommit=True)


@contextlib.contextmanager
def _pair_on(source: LocalCluster, target: LocalCluster, state: Path) -> Iterator[Pair]:
    made = Pair(source, create_database(source, "src"), target, create_database(target, "tgt"),
                state)
    try:
        yield made
    finally:
        _cli("abort", *made.args())
        drop_database(target, made.target_db)
        drop_database(source, made.source_db)


@pytest.fixture
def pair(pg_source: LocalCluster, pg_target: LocalCluster, tmp_path: Path) -> Iterator[Pair]:
    with _pair_on(pg_source, pg_target, tmp_path / "state") as made:
        yield made


@contextlib.contextmanager
def _rds_like(name: str, *, source: bool, **settings: str) -> Iterator[LocalCluster]:
    """A cluster of this test's own (server settings of its own), RDS-like as conftest's."""
    cluster = LocalCluster(bindir=find_bindir(15), name=name, superuser=RDS_SUPERUSER,
                           settings={"password_encryption": "'scram-sha-256'", **settings})
    with cluster:
        make_rds_like(cluster, source=source)
        yield cluster


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
    report = json.loads(synced.stdout)["result"]
    assert sorted(report["unlogged_at_cutover"]) == ["public.child", "public.parent"]
    assert report["tables"] == 1  # only `kept` is replicated

    with pair.src() as src:
        # An UPDATE leaves the counts alone: only a copy at the cutover carries it.
        src.execute("UPDATE parent SET v = 'after sync' WHERE id <= 10;"
                    "INSERT INTO parent VALUES (51, 'new'); INSERT INTO child VALUES (51, 51, 'n');"
                    "DELETE FROM child WHERE id = 1; UPDATE kept SET v = 'k2' WHERE id = 1")
    cut = _cli("cutover", *pair.args(), "--json")
    assert cut.exit_code == 0, cut.output
    done = json.loads(cut.stdout)["result"]
    assert done["unlogged_tables"] == 2 and done["unlogged_rows"] == 51 + 50
    assert done["tables_checked"] == 3  # counted with every other table
    assert "unlogged tables" in done["steps"]
    assert_same(pair.source.dsn(pair.source_db), online_target_dsn(pair.target, pair.target_db))
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
    assert_same(pair.source.dsn(pair.source_db), online_target_dsn(pair.target, pair.target_db))
    with pair.tgt() as tgt:
        # The per-table index build found its table by oid: the index is there, and valid.
        assert tgt.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = "
                           "i.indexrelid WHERE c.relname IN ('by v', 'order lines_pkey', "
                           "'order lines_v_key') AND i.indisvalid").fetchone() == (3,)


# --- status: exit codes in each unhealthy state -----------------------------------------------

def _status(pair: Pair, *extra: str) -> tuple[int, dict[str, Any], str]:
    shown = _cli("status", *pair.args(), "--json", "--lag-timeout", "1", *extra)
    assert shown.stdout, shown.output
    body = json.loads(shown.stdout)  # the --json envelope
    assert body["exit_code"] == shown.exit_code and body["result"], shown.output
    return shown.exit_code, body["result"], shown.stderr


def _until(what: str, check: Any, timeout_s: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _status_until(pair: Pair, code: int) -> dict[str, Any]:
    """The first status that exits with ``code`` (40 s at most)."""
    def attempt() -> dict[str, Any] | None:
        got, status, _ = _status(pair)
        return status if got == code else None

    found: dict[str, Any] = _until(f"status exit {code}", attempt)
    return found


def _healthy(pair: Pair) -> bool:
    code, status, _ = _status(pair)
    return code == 0 and status["worker_running"]


def _synced(pair: Pair, setup: str) -> None:
    with pair.src() as src:
        src.execute(setup)
    synced = _cli("sync", *pair.args(), "--json")
    assert synced.exit_code == 0, synced.output
    _until("a healthy status after sync", lambda: _healthy(pair))


def test_status_exits_13_when_the_worker_is_stopped_and_11_on_ddl_drift_until_the_target_has_it(
        pair: Pair) -> None:
    _synced(pair, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                  "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g")
    code, status, _ = _status(pair)
    assert code == 0 and status["problems"] == [] and status["wal_status"] == "reserved"

    # A stopped worker: the subscription disabled on the target.
    with pair.tgt() as tgt:
        tgt.execute(f"ALTER SUBSCRIPTION {status['name']} DISABLE")
    code, status, _ = _status(pair)
    assert code == EXIT_NOT_STREAMING == 13
    assert [p["kind"] for p in status["problems"]] == ["not streaming"]
    assert "ENABLE" in status["problems"][0]["message"]
    shown = _cli("status", *pair.args(), "--lag-timeout", "1")
    assert shown.exit_code == 13 and "not streaming (exit 13)" in shown.output
    assert "error: not streaming: the subscription is disabled" in shown.stderr
    with pair.tgt() as tgt:
        tgt.execute(f"ALTER SUBSCRIPTION {status['name']} ENABLE")
    _until("streaming again", lambda: _healthy(pair))

    # DDL on the source, and a row that uses it: the apply worker fails on the target.
    with pair.src() as src:
        src.execute("ALTER TABLE t ADD COLUMN extra int; INSERT INTO t VALUES (101, 'new', 7)")
    code, status, _ = _status(pair)
    assert code == EXIT_DDL_DRIFT == 11
    drift = next(p for p in status["problems"] if p["kind"] == "DDL drift")
    assert "public.t" in drift["message"] and "Apply the same DDL on the target" in drift["message"]
    assert "undo" not in drift["message"].lower()
    refused = _cli("cutover", *pair.args())
    assert refused.exit_code == 2 and "Apply the same DDL on the target" in refused.stderr

    # The fix the advice names: the same DDL on the target. The worker resumes by itself.
    with pair.tgt() as tgt:
        tgt.execute("ALTER TABLE t ADD COLUMN extra int")
        _until("the row that uses the new column", lambda: tgt.execute(
            "SELECT extra FROM t WHERE id = 101").fetchone() == (7,))
    _until("a healthy status once the target has the column", lambda: _healthy(pair))
    code, status, _ = _status(pair)
    assert status["drift"] == [] and status["drift_applied"] == ["public.t"]
    cut = _cli("cutover", *pair.args(), "--json")
    assert cut.exit_code == 0, cut.output
    assert_same(pair.source.dsn(pair.source_db), online_target_dsn(pair.target, pair.target_db))


def test_status_exits_12_on_an_apply_error_with_its_text_from_the_log_until_resolved(
        pg_source: LocalCluster, tmp_path: Path) -> None:
    # A target whose log the tool can read: a log collector writing files, and a 15 target, on
    # which the online path runs as superuser (conftest's online rule), who may read them.
    with _rds_like("tgtlog", source=False, logging_collector="on",
                   wal_retrieve_retry_interval="1s") as target, \
            _pair_on(pg_source, target, tmp_path / "state") as pair:
        _synced(pair, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                      "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g")
        with pair.tgt() as tgt:
            tgt.execute("INSERT INTO t VALUES (11, 'written on the target by mistake')")
        with pair.src() as src:
            src.execute("INSERT INTO t VALUES (11, 'from the source')")

        status = _status_until(pair, EXIT_APPLY_ERRORS)
        assert status["apply_errors"] >= 1 and status["new_apply_errors"] >= 1
        assert any("duplicate key value violates unique constraint" in e
                   and "Key (id)=(11) already exists" in e for e in status["error_log"])
        assert status["last_error_at"] and status["last_error_at"][:2] == "20"
        problem = next(p for p in status["problems"] if p["kind"] == "apply errors")
        assert "remove it there" in problem["message"]
        shown = _cli("status", *pair.args(), "--lag-timeout", "1")
        assert "duplicate key value" in shown.output and "the last at 20" in shown.output

        # Resolved on the target: the next errors stop, and status is healthy again.
        with pair.tgt() as tgt:
            tgt.execute("DELETE FROM t WHERE id = 11")
            _until("the replicated row", lambda: tgt.execute(
                "SELECT v FROM t WHERE id = 11").fetchone() == ("from the source",))
        _until("a healthy status once resolved", lambda: _healthy(pair))
        code, status, _ = _status(pair)
        assert code == 0 and status["new_apply_errors"] == 0 and status["errors_since"]


def _switch_wal(conn: psycopg.Connection[Any], segments: int) -> None:
    """Write ``segments`` WAL segments' worth on the source (each switch ends one)."""
    for _ in range(segments):
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS wal_filler (v int);"
                     "INSERT INTO wal_filler VALUES (1); SELECT pg_switch_wal()")


def test_status_exits_10_when_the_slot_is_at_risk_then_shows_it_lost(
        pg_target: LocalCluster, tmp_path: Path) -> None:
    with _rds_like("srcwal", source=True) as source, \
            _pair_on(source, pg_target, tmp_path / "state") as pair:
        _synced(pair, "CREATE TABLE t (id int PRIMARY KEY, v text);"
                      "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g")
        with pair.src_admin() as admin:
            # PGC_SIGHUP: a bounded max_slot_wal_keep_size, as the README advises for a source.
            admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '160MB'")
            admin.execute("SELECT pg_reload_conf()")
            _until("the new setting", lambda: admin.execute(
                "SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'"
            ).fetchone() == ("160",))
            code, status, _ = _status(pair)
            assert code == 0 and status["max_slot_wal_keep_bytes"] == 160 * 1024 * 1024
            assert status["safe_wal_bytes"] > 100 * 1024 * 1024

            # The target stops consuming; the source writes on: less than 20 % left.
            with pair.tgt() as tgt:
                tgt.execute(f"ALTER SUBSCRIPTION {status['name']} DISABLE")
            _switch_wal(admin, 10)
            code, status, _ = _status(pair)
            assert code == EXIT_SLOT_AT_RISK == 10
            assert status["problems"][0]["kind"] == "slot at risk"
            assert status["safe_wal_bytes"] < 32 * 1024 * 1024

            _switch_wal(admin, 4)
            code, status, _ = _status(pair)
            assert code == 10 and status["wal_status"] == "unreserved"

            admin.execute("CHECKPOINT")
            code, status, _ = _status(pair)
            assert code == 10 and status["wal_status"] == "lost"
            assert status["problems"][0]["kind"] == "slot lost"
            assert "cannot continue" in status["problems"][0]["message"]
            shown = _cli("status", *pair.args(), "--lag-timeout", "1")
            assert shown.exit_code == 10 and "WAL held on the source: lost" in shown.output


# --- the source as the target sees it ---------------------------------------------------------

def test_subscription_conninfo_drops_local_files_and_takes_the_target_side_address() -> None:
    params = {"host": "localhost", "port": "15432", "dbname": "app", "user": "mig",
              "sslmode": "require", "sslrootcert": "/home/me/ca.pem", "passfile": "/home/me/.pgpass",
              "application_name": "rdsmigrate", "hostaddr": "127.0.0.1", "connect_timeout": "10"}
    reached = replication.subscription_source(params, "s3cret",
                                              seen_by_target="db.internal:5432")
    got = conninfo.conninfo_to_dict(reached.conninfo)
    assert got == {"host": "db.internal", "port": "5432", "dbname": "app", "user": "mig",
                   "sslmode": "require", "connect_timeout": "10", "password": "s3cret"}
    assert reached.has_password
    assert any("sslrootcert=/home/me/ca.pem" in n and "cannot open" in n for n in reached.notes)
    v6 = replication.subscription_source({"host": "::1"}, None, seen_by_target="[fd00::5]:6432")
    assert conninfo.conninfo_to_dict(v6.conninfo) == {"host": "fd00::5", "port": "6432"}
    assert not v6.has_password

    # A verifying sslmode needs the target server's own CA: refused unless chosen for it.
    verifying = {**params, "sslmode": "verify-full"}
    with pytest.raises(UserError, match="--subscription-sslmode require"):
        replication.subscription_source(verifying, "s3cret")
    chosen = replication.subscription_source(verifying, "s3cret", sslmode="require")
    assert conninfo.conninfo_to_dict(chosen.conninfo)["sslmode"] == "require"
    for bad in ("db:port", "db:70000", "a b"):
        with pytest.raises(UserError, match="source-as-seen-by-target"):
            replication.subscription_source(params, None, seen_by_target=bad)


def test_the_subscription_reaches_the_source_by_the_target_side_address(
        pair: Pair) -> None:
    """The runner sees the source through a forward (a proxy here); the target server reaches it
    directly. Once the forward is gone, replication still streams."""
    with pair.src() as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
    with TcpProxy(pair.source.port) as forward:
        via_forward = pair.source_url.replace(f":{pair.source.port}/", f":{forward.port}/")
        args = ["--source", via_forward, "--target", pair.target_url,
                "--state-dir", str(pair.state)]
        synced = _cli("sync", *args, "--source-as-seen-by-target",
                      f"127.0.0.1:{pair.source.port}")
        assert synced.exit_code == 0, synced.output
        assert f"reaches the source at 127.0.0.1:{pair.source.port}" in synced.stderr
    with pair.src() as src:
        src.execute("INSERT INTO t VALUES (2, 'after the forward is gone')")
    with pair.tgt() as tgt:
        _until("the row, replicated without the forward", lambda: tgt.execute(
            "SELECT v FROM t WHERE id = 2").fetchone() == ("after the forward is gone",))
        row = tgt.execute("SELECT subconninfo FROM pg_subscription").fetchone()
        assert row is not None and f"port={pair.source.port}" in row[0]


def test_a_pgpass_only_source_password_works_for_a_postgresql_18_subscription(
        pg_source: LocalCluster, pg18_target: LocalCluster, tmp_path: Path) -> None:
    """PostgreSQL 16+ refuses a subscription without a password for a non-superuser owner: the
    password the runner read from .pgpass must reach the subscription's connection string."""
    with _pair_on(pg_source, pg18_target, tmp_path / "state") as pair:
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"127.0.0.1:{pg_source.port}:{pair.source_db}:postgres:"
                          f"{pg_source.password}\n")
        pgpass.chmod(0o600)
        with pair.src() as src:
            src.execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        with pair.tgt() as tgt:  # the target's master user: no superuser, as on RDS
            assert tgt.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                               ).fetchone() == (False,)
        args = ["--source", f"postgresql://postgres@127.0.0.1:{pg_source.port}/"
                f"{pair.source_db}?sslmode=disable", "--target", pair.target_url,
                "--state-dir", str(pair.state)]
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env["PGPASSFILE"] = str(pgpass)
        # A process of its own: the copy's worker processes must see this environment.
        synced = subprocess.run([sys.executable, "-c", "from rdsmigrate.cli import main; main()",
                                 "sync", *args], capture_output=True, text=True, timeout=300,
                                env=env)
        assert synced.returncode == 0, synced.stderr
        assert pg_source.password not in synced.stdout + synced.stderr
        with pair.src() as src:
            src.execute("INSERT INTO t VALUES (2, 'streamed to 18')")
        with pair.tgt() as tgt:
            _until("the row on 18", lambda: tgt.execute(
                "SELECT v FROM t WHERE id = 2").fetchone() == ("streamed to 18",))
        cut = _cli("cutover", *pair.args())
        assert cut.exit_code == 0, cut.output


# --- the development side: what preflight tells a source without logical replication ----------

def test_preflight_names_the_aws_commands_for_an_rds_source_and_the_conf_lines_otherwise() -> None:
    role = prerequisites.SourceRole(
        user="app", user_sql="app", superuser=False, may_replicate=False, bypass_rls=False,
        wal_level="replica", free_slots=5, max_slots=10, free_walsenders=5,
        lo_compat_privileges=False, on_rds=True, major=15)
    host = "devdb.c9akciq32.eu-west-1.rds.amazonaws.com"
    found = {code: fix for code, _, fix, _ in prerequisites.replication_findings(role, host)}
    fix = found["wal-level"]
    for command in (
            "aws rds create-db-parameter-group --region eu-west-1 --db-parameter-group-name "
            "rdsmigrate-logical-postgres15 --db-parameter-group-family postgres15",
            "ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot",
            "ParameterName=max_slot_wal_keep_size,ParameterValue=65536,ApplyMethod=immediate",
            "aws rds modify-db-instance --region eu-west-1 --db-instance-identifier devdb "
            "--db-parameter-group-name rdsmigrate-logical-postgres15 --apply-immediately",
            "aws rds reboot-db-instance --region eu-west-1 --db-instance-identifier devdb",
            "GRANT rds_replication TO app;"):
        assert command in fix
    assert "postgresql.conf" not in fix

    elsewhere = {code: (fix, rds) for code, _, fix, rds in prerequisites.replication_findings(
        dataclasses.replace(role, on_rds=False), "db.example.com")}
    fix, rds = elsewhere["wal-level"]
    assert "in postgresql.conf: wal_level = logical and max_slot_wal_keep_size = 64GB" in fix
    assert rds is not None and "--db-instance-identifier <source-instance-id>" in rds


def test_preflight_of_an_rds_like_source_without_logical_replication(tmp_path: Path) -> None:
    """A server with RDS's settings (rds.*) and wal_level=replica: sync's preflight names the
    AWS commands, and warns of an unbounded max_slot_wal_keep_size."""
    with _rds_like("rdsrepl", source=True, wal_level="replica",
                   **{"rds.extensions": "'plpgsql'"}) as source, \
            _rds_like("tgtrepl", source=False) as target, \
            _pair_on(source, target, tmp_path / "state") as pair:
        refused = _cli("sync", *pair.args())
        assert refused.exit_code == 2, refused.output
        assert "aws rds modify-db-parameter-group" in refused.stderr
        assert "aws rds reboot-db-instance --db-instance-identifier <source-instance-id>" in \
            refused.stderr
        assert "postgresql.conf" not in refused.stderr
        shown = _cli("preflight", "--source", pair.source_url, "--target", pair.target_url,
                     "--json")
        findings = json.loads(shown.stdout)
        assert "wal-level" in json.dumps(findings)
