"""The online path under faults: commands killed at every step, then the documented recovery.

Each command runs as a real subprocess of the CLI. The test-only hook ``RDSMIGRATE_TEST_PAUSE_AT``
(:mod:`rdsmigrate.testhook`) holds it at a named step, so that SIGKILL, SIGTERM, SIGHUP or SIGINT
lands exactly there. After each kill the invariants are checked (the source frozen or writable as
the command said, no slot without a record, no session of the tool left on the source, none idle
in a transaction); at the end of each migration source and target are compared by
``tests.dbcheck`` (independent of the package) and nothing of the replication may be left.

A writer keeps changing the source all along (partitions, a keyless table replicated with
REPLICA IDENTITY FULL, out-of-line values), reconnecting after the freeze ended its session.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rdsmigrate.localpg import LocalCluster
from tests.conftest import (
    admin,
    create_database,
    drop_database,
    online_target_dsn,
    online_target_url,
    superuser_dsn,
)
from tests.dbcheck import assert_same

pytestmark = [pytest.mark.pg, pytest.mark.slow]

CLI = [sys.executable, "-m", "rdsmigrate.cli"]
WRITER_MAX_S = 170.0

SCHEMA = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, balance int NOT NULL DEFAULT 0, note text);
INSERT INTO accounts (balance, note) SELECT g, 'seed ' || g FROM generate_series(1, 500) g;
CREATE TABLE ledger (id bigserial PRIMARY KEY, account bigint NOT NULL REFERENCES accounts,
                     amount int NOT NULL);
CREATE INDEX ON ledger (account);
CREATE TABLE events (id bigint NOT NULL, day date NOT NULL, payload jsonb,
                     PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE SEQUENCE ticket_seq;
INSERT INTO events SELECT nextval('ticket_seq'), date '2024-01-01' + (g % 300),
                          jsonb_build_object('g', g) FROM generate_series(1, 500) g;
CREATE TABLE keyless (a int, b text);
INSERT INTO keyless SELECT g, 'k' || g FROM generate_series(1, 200) g;
-- ~100 kB of incompressible text per row, stored out of line (TOAST).
CREATE TABLE docs (id int PRIMARY KEY, revision int NOT NULL DEFAULT 0, body text NOT NULL);
INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(random()::text || g || i), '')
                                 FROM generate_series(1, 3200) i)
  FROM generate_series(1, 5) g;
"""

SYNC_STEPS = ("sync:recorded", "copy:pre-data", "copy:data", "copy:post-data", "sync:copied",
              "sync:subscription")
CUTOVER_STEPS = ("cutover:freeze", "cutover:catch-up", "cutover:sequences", "cutover:verify",
                 "cutover:detach", "cutover:subscription-dropped", "cutover:publication-dropped")
DETACHED_STEPS = ("cutover:subscription-dropped", "cutover:publication-dropped")


def _default_signals() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # an inherited SIG_IGN.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Writer:
    """Inserts, updates, moves and deletes on every kind of table, one transaction each; refused
    writes (the freeze) and ended sessions are expected, any other error is recorded."""

    def __init__(self, dsn: str, seed: int = 11) -> None:
        self.dsn = dsn
        self.rnd = random.Random(seed)
        self.stop = threading.Event()
        self.committed = 0
        self.unexpected: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + WRITER_MAX_S
        conn: psycopg.Connection[Any] | None = None
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, application_name="writer")
                conn.execute(*self._next(n))
                self.committed += 1
            except psycopg.errors.ReadOnlySqlTransaction:
                time.sleep(0.05)
            except psycopg.OperationalError:
                conn = None
                time.sleep(0.05)
            except psycopg.Error as exc:
                self.unexpected.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    def _next(self, n: int) -> tuple[str, list[Any]]:
        r = self.rnd
        choice = n % 8
        if choice == 0:
            return "INSERT INTO accounts (balance, note) VALUES (0, %s)", [f"w{n}"]
        if choice == 1:
            return "UPDATE accounts SET balance = balance + 1 WHERE id = %s", [r.randint(1, 500)]
        if choice == 2:
            return "INSERT INTO ledger (account, amount) VALUES (%s, %s)", [r.randint(1, 500), n]
        if choice == 3:
            return ("INSERT INTO events VALUES (nextval('ticket_seq'), date '2024-02-01' + %s, "
                    "'{\"w\": true}')", [n % 200])
        if choice == 4:  # moves a row to the other partition: a delete and an insert
            return ("UPDATE events SET day = date '2025-06-01' WHERE id = %s AND day < '2025-01-01'",
                    [r.randint(1, 500)])
        if choice == 5:
            return "UPDATE keyless SET b = b || '+' WHERE a = %s", [r.randint(1, 200)]
        if choice == 6:
            if n % 3:
                return "INSERT INTO keyless VALUES (%s, 'w')", [1000 + n]
            return "DELETE FROM keyless WHERE a = %s", [1000 + n - 6]
        return "UPDATE docs SET revision = revision + 1 WHERE id = %s", [r.randint(1, 5)]


class Migration:
    """One source database and its target, and the CLI run against them."""

    def __init__(self, source: LocalCluster, source_db: str, target: LocalCluster,
                 target_db: str, tmp: Path) -> None:
        self.source, self.source_db, self.target, self.target_db = source, source_db, target, target_db
        self.tmp = tmp
        self.runs = 0
        self.source_url = source.url(source_db)
        """How the tool (and so the subscription) reaches the source."""

    def args(self, state_dir: Path | None = None) -> list[str]:
        return ["--source", self.source_url, "--target",
                online_target_url(self.target, self.target_db), "--state-dir",
                str(state_dir or self.tmp / "state")]

    def run(self, *command: str, state_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        args = self.args(state_dir)
        if command[0] == "unfreeze":
            args = args[:4]  # unfreeze keeps no state directory
        return subprocess.run([*CLI, *command, *args], capture_output=True,
                              text=True, timeout=240, preexec_fn=_default_signals,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def killed(self, command: str, step: str, sig: signal.Signals,
               *extra: str) -> tuple[bool, int, str]:
        """Run ``command`` until it reaches ``step``, then send ``sig``. Returns (whether it
        reached the step, its exit code, its output); a run that never reaches the step is
        left to finish."""
        self.runs += 1
        pauses = self.tmp / f"pause-{self.runs}"
        pauses.mkdir()
        log = self.tmp / f"run-{self.runs}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RDSMIGRATE_TEST_PAUSE_AT": step,
               "RDSMIGRATE_TEST_PAUSE_DIR": str(pauses)}
        with log.open("w") as out:
            proc = subprocess.Popen([*CLI, command, *self.args(), *extra], stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_default_signals)
        reached = pauses / f"{step}.reached"
        deadline = time.monotonic() + 180
        while not reached.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, f"{command} never reached {step}"
            time.sleep(0.01)
        if reached.exists():
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            time.sleep(1)
            proc.kill()
            raise AssertionError(f"{command} did not end after {sig.name}: {log.read_text()}") from None
        return reached.exists(), code, log.read_text()

    # What the servers hold.
    def frozen(self) -> bool:
        with psycopg.connect(self.source.dsn(self.source_db), autocommit=True) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_db_role_setting s JOIN pg_database d ON "
                "d.oid = s.setdatabase WHERE d.datname = current_database() AND s.setrole = 0 "
                "AND 'default_transaction_read_only=on' = ANY(s.setconfig))").fetchone()
            return bool(row and row[0])

    def objects(self) -> dict[str, list[str]]:
        # pg_subscription is readable by superusers only.
        with psycopg.connect(self.source.dsn(self.source_db), autocommit=True) as src, \
                psycopg.connect(superuser_dsn(self.target, self.target_db), autocommit=True) as tgt:
            def names(conn: psycopg.Connection[Any], query: str) -> list[str]:
                return sorted(r[0] for r in conn.execute(query).fetchall())

            return {
                "slots": names(src, "SELECT slot_name FROM pg_replication_slots WHERE "
                               "slot_name LIKE 'rdsmigrate%'"),
                "publications": names(src, "SELECT pubname FROM pg_publication"),
                "subscriptions": names(tgt, "SELECT subname FROM pg_subscription"),
            }

    def tdsn(self) -> str:
        return online_target_dsn(self.target, self.target_db)

    def record(self) -> dict[str, Any] | None:
        with psycopg.connect(self.tdsn(), autocommit=True) as tgt:
            if tgt.execute("SELECT to_regclass('rdsmigrate.migration')").fetchone() == (None,):
                return None
            row = tgt.execute("SELECT record FROM rdsmigrate.migration ORDER BY updated_at DESC "
                              "LIMIT 1").fetchone()
            return row[0] if row else None

    def no_session_left(self) -> None:
        """No session of the tool on the source (its walsender aside while streaming), none idle
        in a transaction; a killed command's server sessions may take a moment to notice."""
        deadline = time.monotonic() + 20
        with psycopg.connect(self.source.dsn(self.source_db), autocommit=True) as conn:
            while True:
                left = conn.execute(
                    """SELECT pid, application_name, state, backend_type FROM pg_stat_activity
                        WHERE pid <> pg_backend_pid() AND datname = current_database()
                          AND backend_type <> 'walsender'
                          AND (application_name LIKE 'rdsmigrate%%'
                               OR state LIKE 'idle in transaction%%')""").fetchall()
                if not left:
                    return
                assert time.monotonic() < deadline, f"sessions left on the source: {left}"
                time.sleep(0.1)

    def check_after_kill(self, step: str, sig: signal.Signals, code: int, output: str) -> None:
        """The invariants after a command was killed at ``step``."""
        if sig is signal.SIGKILL:
            assert code == -signal.SIGKILL, output
        else:
            assert code == 128 + sig, output  # the cleanup ran, then 128 + the signal
            assert "Traceback" not in output, output
        record = self.record()
        # No slot holds WAL without a record that names it.
        for slot in self.objects()["slots"]:
            assert record is not None and record["name"] == slot, (slot, record)
        if step.startswith("cutover:"):
            detached = step in DETACHED_STEPS
            if sig is signal.SIGKILL or detached:
                assert self.frozen(), f"killed at {step}: the source must still be frozen"
            else:
                assert not self.frozen(), f"{sig.name} at {step}: the cleanup must unfreeze"
                assert "unfrozen" in output, output
            if detached and sig is not signal.SIGKILL:
                assert "STAYS frozen" in output, output
        elif sig is not signal.SIGKILL:
            assert "--resume" not in output, output  # sync has none: a rerun is its resume
            copied = step in ("sync:copied", "sync:subscription")
            assert ("are kept" in output) if copied else ("were removed" in output), output
            if not copied:
                assert self.objects()["slots"] == [], "an interrupted copy must not leave its slot"
        self.no_session_left()

    def finish_and_compare(self, writer: Writer) -> dict[str, Any]:
        """Rerun cutover to the end; then every check of a finished migration."""
        done = self.run("cutover", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)["result"]
        assert report["source_frozen"] and self.frozen()
        time.sleep(0.2)  # the writer only meets refusals now: its last commit is in
        assert_same(self.source.dsn(self.source_db), self.tdsn())
        assert self.objects() == {"slots": [], "publications": [], "subscriptions": []}
        self.no_session_left()
        assert writer.unexpected == []
        return report

    def unfreeze(self) -> None:
        forced = self.run("unfreeze", "--force")
        assert forced.returncode == 0, forced.stderr


def _remove_replication(m: Migration) -> None:
    """After a failed test, so that its databases can be dropped."""
    with psycopg.connect(superuser_dsn(m.target, m.target_db), autocommit=True) as tgt:
        for (name,) in tgt.execute("SELECT subname FROM pg_subscription").fetchall():
            tgt.execute(f'ALTER SUBSCRIPTION "{name}" DISABLE')
            tgt.execute(f'ALTER SUBSCRIPTION "{name}" SET (slot_name = NONE)')
            tgt.execute(f'DROP SUBSCRIPTION "{name}"')
    with psycopg.connect(m.source.dsn(m.source_db), autocommit=True) as src:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                src.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE database = current_database()")
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)


@pytest.fixture
def migration(pg_source: LocalCluster, source_db: str, pg_target: LocalCluster,
              target_db: str, tmp_path: Path) -> Iterator[Migration]:
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SCHEMA)
    m = Migration(pg_source, source_db, pg_target, target_db, tmp_path)
    yield m
    _remove_replication(m)


def _sync(m: Migration) -> None:
    synced = m.run("sync", "--jobs", "2", "--replica-identity-full")
    assert synced.returncode == 0, synced.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_cutover_killed_at_every_step_is_finished_by_a_rerun(migration: Migration,
                                                              sig: signal.Signals) -> None:
    """One cutover, killed at each of its steps in turn: each rerun continues (or, after the
    cleanup of a SIGTERM, starts again), and abort after the detach never reopens the source."""
    m = migration
    with Writer(m.source.dsn(m.source_db)) as writer:
        _sync(m)
        for step in CUTOVER_STEPS:
            reached, code, output = m.killed("cutover", step, sig, "--timeout", "30")
            assert reached, output
            m.check_after_kill(step, sig, code, output)
            if step == "cutover:subscription-dropped":
                # Detached: abort removes the slot and publication but never unfreezes, and
                # says how to reopen the source on purpose. From an empty state directory.
                aborted = m.run("abort", "--json", state_dir=m.tmp / "empty-abort")
                assert aborted.returncode == 0, aborted.stderr
                result = json.loads(aborted.stdout)["result"]
                assert result["detached"] and not result["unfrozen"] and m.frozen()
                assert "RESET default_transaction_read_only" in result["reopen_command"]
                assert m.objects()["slots"] == []
        report = m.finish_and_compare(writer)
        assert writer.committed > 50
    if sig is signal.SIGKILL:
        assert report["continued"]
    # A rerun shows the stored report again; the frozen source is reopened only on purpose.
    again = m.run("cutover", "--json", state_dir=m.tmp / "empty-again")
    assert again.returncode == 0, again.stderr
    shown = json.loads(again.stdout)["result"]
    assert shown["shown_again"] and shown["final_lsn"] == report["final_lsn"]
    refused = m.run("unfreeze")
    assert refused.returncode == 2 and "detached" in refused.stderr, refused.stderr
    m.unfreeze()
    assert not m.frozen()


# Every phase of the copy meets every signal (3 x 3), in two chains of reruns; the second ends
# after the copy finished and recovers the other documented way (abort, then a new sync).
SYNC_CHAINS = [
    [("copy:pre-data", signal.SIGKILL), ("copy:data", signal.SIGTERM),
     ("copy:post-data", signal.SIGHUP), ("copy:pre-data", signal.SIGHUP),
     ("copy:post-data", signal.SIGKILL)],
    [("copy:pre-data", signal.SIGTERM), ("copy:data", signal.SIGHUP),
     ("copy:data", signal.SIGKILL), ("copy:post-data", signal.SIGTERM),
     ("sync:copied", signal.SIGTERM)],
]


@pytest.mark.parametrize("chain", SYNC_CHAINS, ids=["rerun", "abort-and-sync-again"])
def test_sync_killed_in_each_phase_then_rerun_or_abort_and_sync_again(
        migration: Migration, chain: list[tuple[str, signal.Signals]]) -> None:
    m = migration
    with Writer(m.source.dsn(m.source_db)) as writer:
        for step, sig in chain:
            reached, code, output = m.killed("sync", step, sig, "--jobs", "2",
                                             "--replica-identity-full")
            assert reached, output
            m.check_after_kill(step, sig, code, output)
        if chain[-1][0] == "sync:copied":
            # The other documented recovery: abort, then a new sync over what was copied.
            aborted = m.run("abort", "--json", state_dir=m.tmp / "empty-abort")
            assert aborted.returncode == 0, aborted.stderr
            assert m.objects() == {"slots": [], "publications": [], "subscriptions": []}
            again = m.run("sync", "--jobs", "2", "--replica-identity-full", "--replace")
        else:
            # Continued from the record on the target alone: a fresh, empty state directory.
            again = m.run("sync", "--jobs", "2", "--replica-identity-full",
                          state_dir=m.tmp / "empty-sync")
            assert "continuing" in again.stderr, again.stderr
        assert again.returncode == 0, again.stderr
        rerun = m.run("sync", "--jobs", "2", "--replica-identity-full")
        assert rerun.returncode == 0 and "already streaming" in rerun.stderr, rerun.stderr
        m.finish_and_compare(writer)


def test_twenty_random_kill_points_each_followed_by_the_rerun(
        pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, tmp_path: Path) -> None:
    seed = int(os.environ.get("RDSMIGRATE_FAULT_SEED", "20261201"))
    rnd = random.Random(seed)
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(SCHEMA)
    kills: list[str] = []
    targets: list[str] = []
    try:
        with Writer(pg_source.dsn(source_db), seed=seed) as writer:
            while len(kills) < 20:
                targets.append(create_database(pg_target, "tgt"))
                m = Migration(pg_source, source_db, pg_target, targets[-1],
                              tmp_path / f"m{len(targets)}")
                m.tmp.mkdir()
                finished = False
                while not finished and len(kills) < 20:
                    record = m.record()
                    streaming = record is not None and record["phase"] in (
                        "streaming", "cutting-over", "detached")
                    command = "cutover" if streaming else "sync"
                    step = rnd.choice(CUTOVER_STEPS if streaming else SYNC_STEPS)
                    sig = rnd.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGHUP,
                                      signal.SIGINT])
                    extra = ("--timeout", "30") if streaming else ("--jobs", "2",
                                                                   "--replica-identity-full")
                    reached, code, output = m.killed(command, step, sig, *extra)
                    if not reached:  # a rerun that had nothing left at that step: it finished
                        assert code == 0, output
                        finished = command == "cutover"
                        continue
                    kills.append(f"{command}@{step}/{sig.name}")
                    m.check_after_kill(step, sig, code, output)
                if not finished:
                    synced = m.run("sync", "--jobs", "2", "--replica-identity-full")
                    assert synced.returncode == 0, synced.stderr
                m.finish_and_compare(writer)
                m.unfreeze()
    finally:
        for name in targets:
            _remove_replication(Migration(pg_source, source_db, pg_target, name, tmp_path))
            drop_database(pg_target, name)
    print(f"\nseed {seed}: {len(kills)} kills over {len(targets)} migrations: {kills}")


def test_every_step_from_an_empty_state_dir_under_load(migration: Migration) -> None:
    """sync in one state directory; status, cutover and abort each from a fresh, empty one."""
    m = migration
    with Writer(m.source.dsn(m.source_db)) as writer:
        _sync(m)
        time.sleep(1)
        shown = m.run("status", "--json", state_dir=m.tmp / "empty-status")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)["result"]
        assert status["worker_running"] and status["slot_active"] and status["drift"] == []
        assert status["phase"] == "streaming"
        cut = m.run("cutover", "--json", state_dir=m.tmp / "empty-cutover")
        assert cut.returncode == 0, cut.stderr
        time.sleep(0.2)
        assert_same(m.source.dsn(m.source_db), m.tdsn())
        aborted = m.run("abort", "--json", state_dir=m.tmp / "empty-abort")
        assert aborted.returncode == 0, aborted.stderr
        result = json.loads(aborted.stdout)["result"]
        assert result["detached"] and not result["unfrozen"] and m.frozen()
        assert m.objects() == {"slots": [], "publications": [], "subscriptions": []}
        m.no_session_left()
        assert writer.unexpected == []


def test_freeze_names_superuser_sessions_and_the_printed_unfreeze_works_anywhere(
        migration: Migration) -> None:
    """10.14: a superuser's session (rdsadmin on RDS) is named as such; the printed unfreeze
    works from inside the frozen database and from another; a frozen source's setting is not
    copied to the target."""
    from rdsmigrate.errors import UserError
    from rdsmigrate.online import freeze

    m = migration
    # As on RDS: the tool is the master user (pg_signal_backend, not superuser); a session of
    # the real superuser (rdsadmin) is open in the database.
    with admin(m.source, m.source_db) as superuser, \
            psycopg.connect(m.source.dsn(m.source_db), autocommit=True) as tool:
        superuser.execute("SET application_name = 'admin console'")
        with pytest.raises(UserError) as refused:
            freeze.freeze(tool, m.source_db, timeout_s=0.5)
        text = str(refused.value)
        assert "superuser role(s) rdsadmin" in text and "only a superuser" in text, text
        assert "needs pg_signal_backend" not in text
    assert m.frozen()
    # The printed command, run as printed, in the frozen database and then elsewhere.
    command = shlex.split(freeze.unfreeze_command(m.source_db))
    assert command[:3] == ["psql", "-d", "postgres"]
    env = {**os.environ, "PGPASSWORD": m.source.password}
    base = [str(m.source.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(m.source.port), "-U", "postgres"]
    for dbname in (m.source_db, "postgres"):
        with psycopg.connect(m.source.dsn(m.source_db), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f'ALTER DATABASE "{m.source_db}" SET default_transaction_read_only = on')
        assert m.frozen()
        done = subprocess.run([*base, "-d", dbname, *command[3:]], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert not m.frozen()
    # Sync from a frozen source: the target does not become read-only.
    with psycopg.connect(m.source.dsn(m.source_db), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{m.source_db}" SET default_transaction_read_only = on')
    _sync(m)
    with psycopg.connect(m.tdsn(), autocommit=True) as tgt:
        assert tgt.execute(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON "
            "d.oid = s.setdatabase WHERE d.datname = current_database() "
            "AND 'default_transaction_read_only=on' = ANY(s.setconfig)").fetchone() == (0,)
    # unfreeze without a target to check cannot know: refused, unless --force.
    blind = subprocess.run([*CLI, "unfreeze", "--source", m.source.url(m.source_db)],
                           capture_output=True, text=True)
    assert blind.returncode == 2 and "--target" in blind.stderr
    checked = m.run("unfreeze", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["result"]["unfrozen"] and not m.frozen()
    aborted = m.run("abort")
    assert aborted.returncode == 0, aborted.stderr
