"""The online migration on real clusters: ``sync`` under a write load, ``status``, ``cutover``,
a cutover that fails in the middle, DDL drift, and ``abort``.

The workload records the outcome of every write it attempts, so the tests can say: every write the
application saw committed is on the target, the writes attempted during the freeze failed with an
error the application saw, and nothing was silently lost. Source and target are compared at the
end by ``tests.dbcheck``, which shares no code with the package.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests.conftest import (
    create_database,
    drop_database,
    online_target_dsn,
    online_target_url,
    superuser_dsn,
)
from tests.dbcheck import assert_same
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.pg, pytest.mark.slow]

WORKLOAD_MAX_S = 90.0

SCHEMA = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, balance int NOT NULL DEFAULT 0, note text);
INSERT INTO accounts (balance, note) SELECT g, 'seed ' || g FROM generate_series(1, 2000) g;

CREATE TABLE events (id bigint NOT NULL, day date NOT NULL, payload jsonb,
                     PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE SEQUENCE ticket_seq;  -- owned by no column: cutover must still carry it
INSERT INTO events SELECT nextval('ticket_seq'), date '2024-01-01' + (g % 360),
                          jsonb_build_object('g', g) FROM generate_series(1, 3000) g;

CREATE TABLE audit_log (at timestamptz NOT NULL DEFAULT now(), who text, what text);
INSERT INTO audit_log (who, what) SELECT 'seed', g::text FROM generate_series(1, 500) g;

-- ~100 kB of incompressible text per row: stored out of line (TOAST); the workload's updates
-- never touch it, so pgoutput sends it as "unchanged" and the target must keep its own copy.
CREATE TABLE docs (id int PRIMARY KEY, revision int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(random()::text || g || i), '')
                                 FROM generate_series(1, 3200) i)
  FROM generate_series(1, 20) g;
SELECT lo_from_bytea(0, 'a large object from before the sync');
"""


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _args(cluster: LocalCluster, db: str, other: LocalCluster, other_db: str,
          state: Path) -> list[str]:
    return ["--source", cluster.url(db), "--target", online_target_url(other, other_db),
            "--state-dir", str(state)]


@dataclass
class Outcome:
    op: str
    key: int | None
    status: str
    """committed, rejected (the server refused it: read-only), indoubt (the connection ended
    during the statement: committed or not, the application cannot tell), error (unexpected)."""
    error: str = ""


@dataclass
class Workload:
    """Inserts, updates and deletes on every kind of table, each in its own transaction."""

    dsn: str
    seed: int = 7
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    live_accounts: list[int] = field(default_factory=lambda: list(range(1, 2001)))
    events_2024: list[int] = field(default_factory=lambda: list(range(1, 3001)))
    audit_keys: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, application_name="workload")

    def _reconnect(self, deadline: float) -> psycopg.Connection[Any] | None:
        """A new session, retried while the server is down (a restart in the fault tests);
        None once stopped or out of time."""
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                return self._connect()
            except psycopg.OperationalError:
                time.sleep(0.1)
        return None

    def _run(self) -> None:
        rnd = random.Random(self.seed)
        deadline = time.monotonic() + WORKLOAD_MAX_S
        conn = self._connect()
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if sum(o.status == "rejected" for o in self.outcomes) >= 5:
                    return  # the freeze is seen; enough proof that writes fail visibly
                n += 1
                op, sql_text, params, key = self._next(rnd, n)
                try:
                    row = conn.execute(sql_text, params).fetchone() if "RETURNING" in sql_text \
                        else (conn.execute(sql_text, params) and None)
                    got = int(row[0]) if row else key
                    self._committed(op, got)
                    self.outcomes.append(Outcome(op, got, "committed"))
                except psycopg.errors.ReadOnlySqlTransaction as exc:
                    self.outcomes.append(Outcome(op, key, "rejected", str(exc)))
                except psycopg.OperationalError as exc:
                    self.outcomes.append(Outcome(op, key, "indoubt", str(exc)))
                    conn.close()
                    reconnected = self._reconnect(deadline)
                    if reconnected is None:
                        return
                    conn = reconnected
                except psycopg.Error as exc:
                    self.outcomes.append(Outcome(op, key, "error", str(exc)))
                time.sleep(0.003)
        finally:
            conn.close()

    def _next(self, rnd: random.Random, n: int) -> tuple[str, str, list[Any], int | None]:
        choice = rnd.randrange(10)
        if choice == 0 and len(self.live_accounts) > 100:
            key = self.live_accounts.pop(rnd.randrange(len(self.live_accounts)))
            return "delete account", "DELETE FROM accounts WHERE id = %s", [key], key
        if choice <= 2:
            return ("insert account", "INSERT INTO accounts (balance, note) VALUES (0, %s) "
                    "RETURNING id", [f"w{n}"], None)
        if choice == 3:
            key = rnd.choice(self.live_accounts)
            return "update account", "UPDATE accounts SET balance = balance + 1 WHERE id = %s", [key], key
        if choice == 4:
            return ("insert event", "INSERT INTO events VALUES (nextval('ticket_seq'), "
                    "date '2024-03-01' + %s, '{\"w\": true}') RETURNING id", [n % 200], None)
        if choice == 5 and self.events_2024:
            # Moves the row to the other partition: replicated as a delete and an insert.
            key = self.events_2024.pop(rnd.randrange(len(self.events_2024)))
            return ("move event", "UPDATE events SET day = date '2025-06-01' WHERE id = %s",
                    [key], key)
        if choice == 6:
            self.audit_keys.append(n)
            return ("insert audit", "INSERT INTO audit_log (who, what) VALUES ('w', %s)",
                    [str(n)], n)
        if choice == 7 and self.audit_keys:
            key = self.audit_keys.pop(0)
            if n % 2:
                return ("delete audit", "DELETE FROM audit_log WHERE who = 'w' AND what = %s",
                        [str(key)], key)
            return ("update audit", "UPDATE audit_log SET who = 'w2' WHERE who = 'w' AND "
                    "what = %s", [str(key)], key)
        if choice == 8 and n % 20 == 0:
            return "large object", "SELECT lo_from_bytea(0, %s) AS oid", [f"lo {n}".encode()], None
        key = rnd.randint(1, 20)
        return "update doc", "UPDATE docs SET revision = revision + 1 WHERE id = %s", [key], key

    def _committed(self, op: str, key: int | None) -> None:
        if op == "insert account" and key is not None:
            self.live_accounts.append(key)

    def count(self, op: str, status: str) -> int:
        return sum(o.op == op and o.status == status for o in self.outcomes)


def assert_writes_arrived(work: Workload, target_dsn: str, bodies: dict[int, str]) -> None:
    """Every write the workload saw committed is on the target, exactly once; those it cannot
    know about (indoubt) at most once; the TOASTed bodies (``bodies``: id -> md5) intact."""
    with psycopg.connect(target_dsn, autocommit=True) as tgt:
        accounts = {r[0] for r in tgt.execute("SELECT id FROM accounts").fetchall()}
        indoubt = {o.key for o in work.outcomes if o.status == "indoubt"}
        for o in work.outcomes:
            if o.status != "committed":
                continue
            if o.op == "insert account":
                deleted_later = any(d.op == "delete account" and d.key == o.key
                                    and d.status in ("committed", "indoubt") for d in work.outcomes)
                assert o.key in accounts or deleted_later, f"committed insert {o.key} lost"
            if o.op == "delete account":
                assert o.key not in accounts, f"committed delete {o.key} lost"
        # Every committed doc update arrived exactly once, and the untouched TOASTed bodies intact.
        revisions = dict(tgt.execute("SELECT id, revision FROM docs").fetchall())
        for doc in range(1, 21):
            done = sum(o.op == "update doc" and o.key == doc and o.status == "committed"
                       for o in work.outcomes)
            maybe = sum(o.op == "update doc" and o.key == doc and o.key in indoubt
                        and o.status == "indoubt" for o in work.outcomes)
            assert done <= revisions[doc] <= done + maybe
        assert dict(tgt.execute("SELECT id, md5(body) FROM docs").fetchall()) == bodies
        lo_count = tgt.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        assert lo_count == (1 + work.count("large object", "committed"),) or work.count(
            "large object", "indoubt")


@pytest.fixture
def workload_factory() -> Iterator[list[Workload]]:
    started: list[Workload] = []
    yield started
    for w in started:
        w.stop.set()
        if w.thread is not None:
            w.thread.join(timeout=30)


def _ours(cluster: LocalCluster, db: str) -> dict[str, list[str]]:
    """Replication objects named like the tool's, in that database of that cluster (seen by the
    superuser: pg_subscription is not readable by others)."""
    with psycopg.connect(superuser_dsn(cluster, db), autocommit=True) as conn:
        def names(query: str) -> list[str]:
            return [r[0] for r in conn.execute(query).fetchall()]

        return {
            "slots": names("SELECT slot_name FROM pg_replication_slots WHERE database = "
                           "current_database() AND slot_name LIKE 'rdsmigrate%'"),
            "publications": names("SELECT pubname FROM pg_publication WHERE pubname LIKE 'rdsmigrate%'"),
            "subscriptions": names("SELECT subname FROM pg_subscription WHERE subname LIKE 'rdsmigrate%'"),
        }


def _nothing_left(pg_source: LocalCluster, source_db: str, pg_target: LocalCluster,
                  target_db: str) -> None:
    empty: dict[str, list[str]] = {"slots": [], "publications": [], "subscriptions": []}
    assert _ours(pg_source, source_db) == empty
    assert _ours(pg_target, target_db) == empty


def test_online_migration_under_write_load_loses_nothing_and_cuts_over_in_seconds(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path, workload_factory: list[Workload],
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SCHEMA)
        bodies = dict(conn.execute("SELECT id, md5(body) FROM docs").fetchall())
        toasted = conn.execute("SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                               "WHERE relname = 'docs'").fetchone()
        assert toasted is not None and toasted[0] > 1_000_000, "docs.body must be stored out of line"
    work = Workload(pg_source.dsn(source_db))
    workload_factory.append(work)
    work.start()
    time.sleep(0.5)
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path / "state")

    synced = _cli("sync", *args, "--jobs", "2", "--replica-identity-full")
    assert synced.exit_code == 0, synced.output
    assert "public.audit_log has no primary key" in synced.stderr  # the consent, said aloud
    assert "replica identity FULL set on public.audit_log" in synced.stdout
    assert "streaming: subscription rdsmigrate_" in synced.stdout

    lags: list[tuple[int, float]] = []
    for _ in range(6):
        time.sleep(0.5)
        shown = _cli("status", *args, "--json")
        assert shown.exit_code == 0, shown.output
        status = json.loads(shown.stdout)["result"]
        assert status["worker_running"] and status["slot_active"] and status["publication"]
        assert status["drift"] == [] and not status["frozen"]
        assert {t["state"] for t in status["tables"]} == {"ready"}
        assert status["apply_errors"] == 0
        # Timed, not read from replay_lag (NULL under a steady load): always a figure.
        assert status["lag_seconds"] is not None and not status["lag_seconds_at_least"]
        lags.append((status["lag_bytes"], status["lag_seconds"]))
    committed_before_cutover = sum(o.status == "committed" for o in work.outcomes)
    assert committed_before_cutover > 200, "the workload must be writing during sync"

    cut = _cli("cutover", *args, "--json", "--timeout", "30")
    assert cut.exit_code == 0, cut.output
    report = json.loads(cut.stdout)["result"]
    work.join()
    print(f"\nlag under load (bytes, s): {lags}; write downtime {report['write_downtime_s']} s; "
          f"steps {report['steps']}; workload: {len(work.outcomes)} writes, "
          f"{committed_before_cutover} committed before cutover")
    assert report["write_downtime_s"] < 10
    assert report["sequences"] == 2 and report["verify"] == "counts"
    assert report["sessions_ended"] >= 1  # the workload's connection
    assert "RESET default_transaction_read_only" in report["unfreeze_command"]

    # Writes during the freeze failed with an error the application saw; none is unaccounted for.
    rejected = [o for o in work.outcomes if o.status == "rejected"]
    assert rejected and all("read-only transaction" in o.error for o in rejected)
    assert [o for o in work.outcomes if o.status == "error"] == []

    fingerprints = assert_same(pg_source.dsn(source_db), online_target_dsn(pg_target, target_db))
    assert fingerprints["public.accounts"][0] > 2000 - 200

    assert_writes_arrived(work, online_target_dsn(pg_target, target_db), bodies)
    with psycopg.connect(online_target_dsn(pg_target, target_db), autocommit=True) as tgt:
        # The target is writable, and its sequences continue where the source's stopped.
        top = tgt.execute("SELECT max(id) FROM accounts").fetchone()
        got = tgt.execute("INSERT INTO accounts (balance) VALUES (1) RETURNING id").fetchone()
        assert top is not None and got is not None and got[0] > top[0]

    # The source stays frozen for every new session until the user unfreezes it.
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src, \
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.execute("INSERT INTO accounts (balance) VALUES (1)")
    _nothing_left(pg_source, source_db, pg_target, target_db)


def _wait_for_rows(target: LocalCluster, db: str, rows: int, failure: str) -> None:
    """Wait (30 s at most) until replication has brought table ``t`` to ``rows`` rows."""
    deadline = time.monotonic() + 30
    with psycopg.connect(online_target_dsn(target, db), autocommit=True) as tgt:
        while tgt.execute("SELECT count(*) FROM t").fetchone() != (rows,):
            assert time.monotonic() < deadline, failure
            time.sleep(0.1)


def test_failed_cutover_unfreezes_the_source_and_replication_catches_up_then_abort_cleans(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                     "INSERT INTO t SELECT g, g::text FROM generate_series(1, 100) g")
    state = tmp_path / "state"
    args = _args(pg_source, source_db, pg_target, target_db, state)
    synced = _cli("sync", *args, "--json")
    assert synced.exit_code == 0, synced.output
    for text in (synced.stdout, synced.stderr):
        assert pg_source.password not in text and pg_target.password not in text

    # DDL on the source is not replicated: status names it and cutover refuses, source untouched.
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
        src.execute("CREATE TABLE late (id int PRIMARY KEY)")
        shown = _cli("status", *args, "--json")
        assert shown.exit_code == 11, shown.output  # DDL drift
        assert json.loads(shown.stdout)["result"]["drift"] == [
            "public.late: created since the copy (it is not on the target)"]
        refused = _cli("cutover", *args)
        assert refused.exit_code == 2
        assert "public.late" in refused.stderr and "DDL" in refused.stderr
        src.execute("INSERT INTO t VALUES (101, 'writable')")
        src.execute("DROP TABLE late")

    # The target cannot apply (a lock holds the replicated table) while the cutover waits.
    with psycopg.connect(online_target_dsn(pg_target, target_db)) as blocker:
        blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
            src.execute("INSERT INTO t VALUES (102, 'stuck behind the lock')")
        behind = _cli("status", *args, "--json", "--lag-timeout", "1")
        assert behind.exit_code == 0, behind.output
        lagging = json.loads(behind.stdout)["result"]
        assert lagging["lag_seconds_at_least"] and lagging["lag_seconds"] >= 1
        assert "more than 1." in _cli("status", *args, "--lag-timeout", "1").stdout
        failed = _cli("cutover", *args, "--timeout", "2")
        assert failed.exit_code == 2, failed.output
        assert "did not apply" in failed.stderr and "unfrozen" in failed.stderr
        assert "still running" in failed.stderr
        for text in (failed.stdout, failed.stderr, refused.stderr, shown.stdout):
            assert pg_source.password not in text and pg_target.password not in text
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
            src.execute("INSERT INTO t VALUES (103, 'the source takes writes again')")
        blocker.rollback()

    # With the fault removed, replication catches up on its own.
    _wait_for_rows(pg_target, target_db, 103, "replication did not catch up")
    shown = _cli("status", *args, "--json")
    status = json.loads(shown.stdout)["result"]
    assert status["worker_running"] and status["slot_active"] and not status["frozen"]
    # Caught up and idle: the probe sees nothing pending instead of waiting out its limit.
    assert not status["lag_seconds_at_least"] and status["lag_seconds"] < 1

    # Without its record file, status reads the record kept on the target.
    for record in state.glob("online-*.json"):
        record.unlink()
    shown = _cli("status", *args, "--json")
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)["result"]
    assert status["recorded"] and status["drift"] == [] and status["worker_running"]
    # A freeze that no cutover of the tool made is not the tool's to lift as a side effect.
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
        src.execute(f'ALTER DATABASE "{source_db}" SET default_transaction_read_only = on')
    aborted = _cli("abort", *args, "--json")
    assert aborted.exit_code == 0, aborted.output
    removed = json.loads(aborted.stdout)["result"]
    assert len(removed["subscriptions"]) == len(removed["slots"]) == len(removed["publications"]) == 1
    assert not removed["unfrozen"] and removed["source_frozen"]
    _nothing_left(pg_source, source_db, pg_target, target_db)
    # unfreeze lifts it: the target was never detached (the record says aborted).
    lifted = _cli("unfreeze", "--source", pg_source.url(source_db), "--target",
                  online_target_url(pg_target, target_db), "--json")
    assert lifted.exit_code == 0, lifted.output
    assert json.loads(lifted.stdout)["result"]["unfrozen"]
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
        src.execute("INSERT INTO t VALUES (104, 'writable after abort')")


def _frozen(conn: psycopg.Connection[Any], dbname: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE d.datname = %s AND s.setrole = 0"
        " AND 'default_transaction_read_only=on' = ANY(s.setconfig))", [dbname]).fetchone()
    return bool(row and row[0])


def test_target_unreachable_in_the_middle_of_cutover_leaves_the_source_writable_and_replicating(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    """The tool reaches the target through a proxy that is cut right after the freeze; the
    target server itself, and so its subscription, keeps running."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text);"
                     "CREATE SEQUENCE s; SELECT nextval('s');"
                     "INSERT INTO t SELECT g, g::text FROM generate_series(1, 100) g")
    state = tmp_path / "state"
    with TcpProxy(pg_target.port) as proxy:
        proxied = online_target_url(pg_target, target_db).replace(f":{pg_target.port}/", f":{proxy.port}/")
        args = ["--source", pg_source.url(source_db), "--target", proxied,
                "--state-dir", str(state)]
        synced = _cli("sync", *args)
        assert synced.exit_code == 0, synced.output

        cut = threading.Event()
        with psycopg.connect(online_target_dsn(pg_target, target_db)) as blocker:
            # Apply waits behind this lock, so the cutover is still waiting for the target when
            # the proxy goes down; released once it is down, so the wait itself ends.
            blocker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
                src.execute("INSERT INTO t VALUES (101, 'written before the cutover')")

            def cut_after_freeze() -> None:
                # The freeze ends the sessions of every application, this watcher's included.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as watch:
                            while not _frozen(watch, source_db) and time.monotonic() < deadline:
                                time.sleep(0.01)
                        break
                    except psycopg.OperationalError:
                        continue
                proxy.cut()
                cut.set()
                blocker.rollback()

            watcher = threading.Thread(target=cut_after_freeze, daemon=True)
            watcher.start()
            failed = _cli("cutover", *args, "--timeout", "30")
            watcher.join(timeout=35)
        assert cut.is_set()
        assert failed.exit_code == 2, failed.output
        assert "cutover failed" in failed.stderr and "unfrozen" in failed.stderr
        assert "still running" in failed.stderr
        assert pg_target.password not in failed.output + failed.stderr
        # The application writes to the source again; the target still follows it.
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
            assert not _frozen(src, source_db)
            src.execute("INSERT INTO t VALUES (102, 'the source takes writes again')")
        _wait_for_rows(pg_target, target_db, 102, "replication did not keep running")
        proxy.restore()
        status = json.loads(_cli("status", *args, "--json").stdout)["result"]
        assert status["worker_running"] and status["slot_active"] and not status["frozen"]
        # With the target reachable again, the same cutover goes through.
        done = _cli("cutover", *args, "--json")
        assert done.exit_code == 0, done.output
    assert_same(pg_source.dsn(source_db), online_target_dsn(pg_target, target_db))


def test_tables_without_replica_identity_are_refused_unless_consented_then_verified_in_full(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE keyed (id int PRIMARY KEY, n int);"
                     "INSERT INTO keyed SELECT g, g FROM generate_series(1, 1000) g;"
                     "CREATE TABLE loose (a int, b text);"
                     "INSERT INTO loose SELECT g, 'x' FROM generate_series(1, 50) g;"
                     "SELECT lo_from_bytea(7001, 'kept'), lo_from_bytea(7002, 'unlinked later')")
    args = _args(pg_source, source_db, pg_target, target_db, tmp_path)
    refused = _cli("sync", *args)
    assert refused.exit_code == 2
    assert "public.loose" in refused.stderr and "--replica-identity-full" in refused.stderr
    assert "public.keyed" not in refused.stderr
    _nothing_left(pg_source, source_db, pg_target, target_db)
    with psycopg.connect(online_target_dsn(pg_target, target_db)) as tgt:
        assert tgt.execute("SELECT count(*) FROM pg_class WHERE relname IN ('keyed', 'loose')"
                           ).fetchone() == (0,)

    synced = _cli("sync", *args, "--replica-identity-full", "--json")
    assert synced.exit_code == 0, synced.output
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
        # Found on the target by all their columns, as REPLICA IDENTITY FULL has them logged.
        src.execute("UPDATE loose SET b = 'changed' WHERE a <= 10; DELETE FROM loose WHERE a > 40;"
                    "UPDATE keyed SET n = -n WHERE id % 7 = 0; SELECT lo_unlink(7002)")
    cut = _cli("cutover", *args, "--verify", "full", "--json")
    assert cut.exit_code == 0, cut.output
    report = json.loads(cut.stdout)["result"]
    assert report["verify"] == "full" and report["tables_checked"] == 2
    assert report["large_objects"] == 1
    assert_same(pg_source.dsn(source_db), online_target_dsn(pg_target, target_db))
    _nothing_left(pg_source, source_db, pg_target, target_db)


def test_online_migration_to_a_newer_major(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, tmp_path: Path,
) -> None:
    """15 to 18, as from development to a newer RDS: the subscription on 18 streams from 15."""
    target_db = create_database(pg18_target, "tgt")
    try:
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text);"
                         "INSERT INTO t (v) SELECT g::text FROM generate_series(1, 500) g")
        args = _args(pg_source, source_db, pg18_target, target_db, tmp_path)
        synced = _cli("sync", *args, "--json")
        assert synced.exit_code == 0, synced.output
        with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as src:
            src.execute("INSERT INTO t (v) SELECT 'after ' || g FROM generate_series(1, 100) g;"
                        "UPDATE t SET v = v || '!' WHERE id % 3 = 0; DELETE FROM t WHERE id % 10 = 0")
        cut = _cli("cutover", *args, "--json")
        assert cut.exit_code == 0, cut.output
        assert_same(pg_source.dsn(source_db), pg18_target.dsn(target_db))
        _nothing_left(pg_source, source_db, pg18_target, target_db)
    finally:
        drop_database(pg18_target, target_db)
