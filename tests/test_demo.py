"""`rdsmigrate demo`: its payments database is deterministic and holds what real migrations meet;
the whole demo exits 0 with "identical", prints no password and leaves nothing behind.

Contents are compared with ``tests.dbcheck`` (its own catalog query, counts and md5 of sorted row
texts), never with the code under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rdsmigrate.db.connect import Endpoint
from rdsmigrate.demo import dataset
from rdsmigrate.localpg import LocalCluster
from rdsmigrate.progress import Reporter
from tests.conftest import create_database, drop_database
from tests.dbcheck import object_counts, sequence_values, table_fingerprints

pytestmark = pytest.mark.pg

# The CLI of this checkout, whatever the working directory.
RDSMIGRATE = [sys.executable, "-m", "rdsmigrate.cli"]
LEAKED_SECRET = re.compile(r"password\s*=|postgres(?:ql)?://[^/\s@]*:[^/\s@]*@", re.IGNORECASE)


@pytest.fixture(scope="module")
def two_builds(pg_source: LocalCluster) -> Iterator[tuple[str, str]]:
    """The scale-1 dataset built twice, into two databases of the same cluster."""
    names = (create_database(pg_source, "demo_a"), create_database(pg_source, "demo_b"))
    for name in names:
        dataset.build(Endpoint.parse("source", pg_source.dsn(name)), 1, Reporter(quiet=True))
    yield names
    for name in names:
        drop_database(pg_source, name)


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _large_objects(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return [(int(oid), str(digest)) for oid, digest in conn.execute(
            "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid")]


def _database_settings(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(_one(conn, """SELECT setconfig FROM pg_db_role_setting
                                    WHERE setdatabase = (SELECT oid FROM pg_database
                                                         WHERE datname = current_database())
                                      AND setrole = 0"""))


def test_two_builds_of_the_dataset_are_identical_row_for_row(
    pg_source: LocalCluster, two_builds: tuple[str, str]
) -> None:
    a, b = (pg_source.dsn(name) for name in two_builds)
    tables = table_fingerprints(a)
    assert tables == table_fingerprints(b)
    payments = sum(rows for name, (rows, _) in tables.items() if name.startswith("payments.payments_"))
    assert payments == dataset.PAYMENTS_PER_SCALE
    assert len(tables) >= 20 and sum(rows for rows, _ in tables.values()) > 350_000
    assert sequence_values(a) == sequence_values(b)
    assert _large_objects(a) == _large_objects(b)
    assert object_counts(a) == object_counts(b)
    assert _database_settings(a) == _database_settings(b)


def test_the_dataset_holds_what_real_migrations_meet(
    pg_source: LocalCluster, two_builds: tuple[str, str]
) -> None:
    dsn = pg_source.dsn(two_builds[0])
    with psycopg.connect(dsn) as conn:
        def q(query: str) -> Any:
            return _one(conn, query)

        # monthly partitions plus a default one, every one of them holding rows
        assert q("SELECT count(*) FROM pg_inherits WHERE inhparent = 'payments.payments'::regclass") == 13
        assert q("SELECT partdefid <> 0 FROM pg_partitioned_table "
                 "WHERE partrelid = 'payments.payments'::regclass")
        assert q("SELECT count(*) FROM payments.payments_default") > 0
        assert q("""SELECT bool_and(c.reltuples > 0) FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = 'payments.payments'::regclass""")
        assert q("SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum "
                 "WHERE enumtypid = 'payments.payment_status'::regtype") == [
            "pending", "authorized", "captured", "failed", "refunded", "disputed"]
        assert q("SELECT count(*) FROM pg_type WHERE typtype = 'd' AND typnamespace = "
                 "'payments'::regnamespace") == 2
        assert q("SELECT attgenerated FROM pg_attribute WHERE attrelid = 'payments.payments'::regclass "
                 "AND attname = 'net_amount'") == "s"
        assert q("SELECT bool_and(net_amount = amount - fee) FROM payments.payments")
        # a keyless table, with the duplicate rows such tables collect
        assert q("SELECT count(*) FROM pg_constraint WHERE conrelid = 'audit.events'::regclass "
                 "AND contype IN ('p', 'u')") == 0
        assert q("SELECT count(*) - count(DISTINCT e) FROM audit.events e") > 0
        assert q("SELECT format_type(a.atttypid, a.atttypmod) FROM pg_index i JOIN pg_attribute a "
                 "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                 "WHERE i.indrelid = 'payments.payment_methods'::regclass AND i.indisprimary") == "uuid"
        assert q("SELECT attidentity FROM pg_attribute WHERE attrelid = 'ledger.entries'::regclass "
                 "AND attname = 'entry_id'") == "a"
        # the invoice sequence belongs to no column, and was advanced once per invoice
        assert q("SELECT count(*) FROM pg_depend WHERE objid = 'payments.invoice_number_seq'::regclass "
                 "AND deptype IN ('a', 'i')") == 0
        assert q("SELECT last_value FROM payments.invoice_number_seq") == 100000 + q(
            "SELECT count(*) FROM payments.invoices")
        assert q("SELECT count(*) FROM pg_largeobject_metadata") == 3
        assert q("SELECT count(*) FROM payments.statements s JOIN pg_largeobject_metadata m "
                 "ON m.oid = s.document") == 3
        assert q("SELECT ispopulated FROM pg_matviews WHERE matviewname = 'daily_totals'")
        assert q("SELECT count(*) FROM payments.daily_totals") > 300
        assert q("SELECT count(*) FROM pg_views WHERE schemaname = 'ledger'") == 1
        assert q("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace IN "
                 "('payments'::regnamespace, 'ledger'::regnamespace)") >= 10
        assert q("SELECT count(*) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid "
                 "AND d.classoid = 'pg_class'::regclass") >= 8
        types = set(q("""SELECT array_agg(DISTINCT format_type(atttypid, NULL)) FROM pg_attribute
                         WHERE attrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN
                               ('payments'::regnamespace, 'ledger'::regnamespace, 'audit'::regnamespace))
                           AND attnum > 0"""))
        assert {"jsonb", "text[]", "bytea", "numeric", "timestamp with time zone", "uuid"} <= types
        # double entry: every posting balances
        assert q("SELECT sum(CASE direction WHEN 'C' THEN amount ELSE -amount END) FROM ledger.entries") == 0
        # the trigger stamps updated_at unless the statement sets it
        with conn.transaction(force_rollback=True):
            assert q("UPDATE payments.customers SET full_name = 'X' WHERE customer_id = 1 "
                     "RETURNING updated_at = now()")
            assert q("UPDATE payments.payments SET tags = '{x}' WHERE payment_id = 1 "
                     "RETURNING updated_at = now()")
    assert _database_settings(dsn) == ["TimeZone=America/New_York", "search_path=payments, public"]


def _run_demo(*args: str, cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """The demo as a user runs it, with its temporary files in ``tmpdir`` and no PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RDSMIGRATE_"))}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.run([*RDSMIGRATE, "demo", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture
def demo_tmpdir() -> Iterator[Path]:
    """A private TMPDIR for the demo, traversable by the unprivileged server user when root."""
    path = Path(tempfile.mkdtemp(prefix="demo-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _demo_leftovers(tmpdir: Path) -> list[str]:
    """What the demo made and should have removed: its directories and its servers."""
    left = [p.name for p in tmpdir.iterdir() if p.name.startswith("rdsmigrate-demo")]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tmpdir) in text and "postgres" in text:
            left.append(f"process {cmdline.parent.name}: {text.strip()}")
    return left


@pytest.mark.slow
def test_demo_end_to_end_says_identical_and_leaves_nothing_behind(
    demo_tmpdir: Path, tmp_path: Path
) -> None:
    proc = _run_demo("--scale", "1", "--json", cwd=tmp_path, tmpdir=demo_tmpdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)["result"]
    assert report["identical"] is True
    assert report["rows"] == report["verified_rows"] > 350_000
    assert report["large_objects"] == 3 and report["copy_mb_per_s"] > 0
    assert report["kept"] is False and report["source"]["passfile"] is None
    assert not LEAKED_SECRET.search(proc.stdout + proc.stderr)
    assert list(tmp_path.iterdir()) == []
    assert _demo_leftovers(demo_tmpdir) == []


@pytest.mark.slow
def test_demo_keep_leaves_clusters_reachable_through_a_private_passfile(
    demo_tmpdir: Path, tmp_path: Path
) -> None:
    proc = _run_demo("--keep", "--jobs", "2", cwd=tmp_path, tmpdir=demo_tmpdir)
    out = proc.stdout + proc.stderr
    stops = re.findall(r"stop and remove: (.+)", out)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "verified identical" in out
        assert len(stops) == 2
        passfiles = re.findall(r"PGPASSFILE=(\S+) \S+ -h 127\.0\.0\.1 -p (\d+) -U postgres paymentdb",
                               out)
        assert len(passfiles) == 2
        for passfile, port in passfiles:
            path = Path(passfile)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            password = path.read_text().strip().split(":", 4)[4]
            assert password and password not in out
            with psycopg.connect(host="127.0.0.1", port=port, dbname="paymentdb", user="postgres",
                                 passfile=passfile) as conn:
                assert _one(conn, "SELECT count(*) FROM payments.payments") == dataset.PAYMENTS_PER_SCALE
                assert _one(conn, "SHOW search_path") == "payments, public"
        assert not LEAKED_SECRET.search(out)
    finally:
        for command in stops:
            subprocess.run(["bash", "-c", command], capture_output=True, check=False)
    assert _demo_leftovers(demo_tmpdir) == [d.name for d in demo_tmpdir.iterdir()
                                            if d.name.startswith("rdsmigrate-demo-work-")]
