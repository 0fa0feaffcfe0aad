"""Interrupting `copy` and finishing it with `copy --resume`.

The copy runs as a real subprocess of the installed CLI so that SIGKILL and SIGINT hit it the way
they would hit a user's terminal session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rdsmigrate.localpg import LocalCluster
from tests.dbcheck import assert_same

pytestmark = [pytest.mark.pg, pytest.mark.slow]

CLI = [sys.executable, "-m", "rdsmigrate.cli"]
TABLES = 5


def _fill(cluster: LocalCluster, db: str) -> None:
    """Five tables of ~35 MB, so the data phase lasts long enough to be interrupted."""
    with psycopg.connect(cluster.dsn(db), autocommit=True) as conn:
        for i in range(TABLES):
            conn.execute(
                f"CREATE TABLE t{i} (id bigint PRIMARY KEY, body text);"
                f"INSERT INTO t{i} SELECT g, repeat(md5((g + {i})::text), 4)"
                f"  FROM generate_series(1, 200000) g"
            )
        conn.execute("CREATE SEQUENCE s; SELECT setval('s', 77)")


def _events(state_dir: Path) -> list[dict[str, object]]:
    files = list(state_dir.glob("copy-*.jsonl"))
    if not files:
        return []
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def _tables_done(state_dir: Path) -> int:
    return sum(1 for e in _events(state_dir) if e["event"] == "table")


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # an inherited SIG_IGN: run from such a job, the copy would (rightly) not see Ctrl-C at all.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_copy(source: str, target: str, state_dir: Path, log: Path,
                jobs: int = 1) -> subprocess.Popen[bytes]:
    """Output goes to a file: a pipe nobody reads could fill up and stall the copy. With one
    job no table is split (nothing to share it with)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*CLI, "copy", "-s", source, "-t", target, "--jobs", str(jobs), "--split-mb", "10",
             "--state-dir", str(state_dir)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_default_sigint,
        )


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def _last_table_held(cluster: LocalCluster, db: str) -> Iterator[None]:
    """Lock the target's last table (units go biggest first, then by name: t4 is last) as soon
    as the schema has created it, so the copy cannot finish before the test interrupts it
    however fast the machine; released on the way out."""
    deadline = time.monotonic() + 60
    with psycopg.connect(cluster.dsn(db)) as conn:
        while conn.execute("SELECT to_regclass('public.t4')").fetchone() == (None,):
            conn.rollback()
            assert time.monotonic() < deadline, "the copy never created its tables"
            time.sleep(0.005)
        conn.execute(f"LOCK TABLE t{TABLES - 1} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def _slots(cluster: LocalCluster, db: str) -> list[str]:
    with psycopg.connect(cluster.dsn(db)) as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()]


def test_sigkill_in_the_data_phase_then_resume_gives_identical_databases(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    _fill(pg_source, source_db)
    state = tmp_path / "state"
    src, tgt = pg_source.url(source_db), pg_target.url(target_db)
    proc = _start_copy(src, tgt, state, tmp_path / "copy.log")
    with _last_table_held(pg_target, target_db):
        _wait_for(lambda: _tables_done(state) >= 1 or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done_before = _tables_done(state)
    assert 1 <= done_before < TABLES, "the kill must land in the middle of the data phase"
    # The killed copy's temporary slot went with its session: nothing holds WAL on the source.
    _wait_for(lambda: _slots(pg_source, source_db) == [], timeout=10)

    resumed = subprocess.run(
        [*CLI, "copy", "-s", src, "-t", tgt, "--jobs", "2", "--state-dir", str(state), "--resume"],
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "different snapshots" in resumed.stderr
    runs = {e["table"]: e["run"] for e in _events(state) if e["event"] == "table"}
    assert sorted(runs.values()).count(1) == done_before and len(runs) == TABLES
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    verified = subprocess.run([*CLI, "verify", "-s", src, "-t", tgt, "--json"],
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["result"]["identical"] is True


def test_ctrl_c_stops_the_workers_and_says_what_state_the_target_is_in(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    _fill(pg_source, source_db)
    state = tmp_path / "state"
    log = tmp_path / "copy.log"
    proc = _start_copy(pg_source.url(source_db), pg_target.url(target_db), state, log)
    try:
        with _last_table_held(pg_target, target_db):
            _wait_for(lambda: _tables_done(state) >= 1 or proc.poll() is not None)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGQUIT)  # the CLI prints every thread's stack on SIGQUIT
        time.sleep(2)
        raise AssertionError(f"copy did not stop after SIGINT:\n{log.read_text()}") from None
    finally:
        proc.kill()
        proc.wait()
    stderr = log.read_text()
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "tables are complete" in stderr
    assert "Traceback" not in stderr
    # The workers' queries were cancelled on both servers, not left running.
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        active = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rdsmigrate'"
        ).fetchone()
    assert active == (0,)
    assert _tables_done(state) < TABLES


def test_resume_without_an_interrupted_copy_is_a_clear_error(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*CLI, "copy", "-s", pg_source.url(source_db), "-t", pg_target.url(target_db),
         "--resume", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nothing to resume" in result.stderr


def test_resume_drops_a_key_index_built_but_never_attached(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    """A table of 64 MB or more gets its primary key in two steps (``schema.KeyBuild``): CREATE
    UNIQUE INDEX under a temporary name, then ADD CONSTRAINT .. USING INDEX. A copy killed
    between the two leaves the index behind; --resume must drop it and make the real key."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, body text);"
                     "INSERT INTO big SELECT g, repeat(md5(g::text), 5)"
                     "  FROM generate_series(1, 500000) g")
    state = tmp_path / "state"
    src, tgt = pg_source.url(source_db), pg_target.url(target_db)
    # Two jobs split the table into ranges: no TRUNCATE, which the lock below would block.
    proc = _start_copy(src, tgt, state, tmp_path / "copy.log", jobs=2)
    try:
        deadline = time.monotonic() + 60
        with psycopg.connect(pg_target.dsn(target_db)) as holder, \
                psycopg.connect(pg_target.dsn(target_db), autocommit=True) as watcher:
            while holder.execute("SELECT to_regclass('public.big')").fetchone() == (None,):
                holder.rollback()
                assert time.monotonic() < deadline, "the copy never created the table"
                time.sleep(0.005)
            # ACCESS SHARE lets the rows and CREATE UNIQUE INDEX through, not ADD CONSTRAINT.
            holder.execute("LOCK TABLE big IN ACCESS SHARE MODE")

            def attach_waits() -> bool:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rdsmigrate'"
                    " AND wait_event_type = 'Lock' AND query ILIKE '%ADD CONSTRAINT%USING INDEX%'"
                ).fetchone()
                return (row is not None and row[0] > 0) or proc.poll() is not None

            _wait_for(attach_waits)
            assert proc.poll() is None, (tmp_path / "copy.log").read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # As after a crash: the server drops the dead client's sessions.
            watcher.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'rdsmigrate'")
    finally:
        proc.kill()
        proc.wait()

    def target_indexes() -> list[tuple[str, bool]]:
        with psycopg.connect(pg_target.dsn(target_db)) as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT c.relname, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)"
                "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'public.big'::regclass ORDER BY 1").fetchall()]

    stray = target_indexes()
    assert len(stray) == 1 and stray[0][0].startswith("rdsmigrate_key_") and not stray[0][1]

    resumed = subprocess.run(
        [*CLI, "copy", "-s", src, "-t", tgt, "--jobs", "2", "--state-dir", str(state), "--resume"],
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert target_indexes() == [("big_pkey", True)]
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))


def test_resume_after_a_post_data_failure_finishes_what_the_failed_run_left(
    pg_source: LocalCluster, source_db: str, pg_target: LocalCluster, target_db: str, tmp_path: Path
) -> None:
    """A foreign key fails to validate (the test slips an orphan row into the target while the
    rows load); once the row is gone, --resume must finish the post-data that the failed run
    left half done, whatever of it already exists (a trigger, a publication's member...)."""
    with psycopg.connect(pg_source.dsn(source_db), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE parent (id int PRIMARY KEY);"
            "CREATE TABLE child (id int PRIMARY KEY, pid int CONSTRAINT child_pid_fkey"
            "  REFERENCES parent);"
            "INSERT INTO parent SELECT generate_series(1, 100);"
            "INSERT INTO child SELECT g, g FROM generate_series(1, 100) g;"
            "CREATE INDEX child_pid ON child (pid);"
            "COMMENT ON CONSTRAINT child_pid_fkey ON child IS 'the key';"
            "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS"
            "  'BEGIN RETURN NEW; END';"
            "CREATE TRIGGER child_noop BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION noop();"
            "ALTER TABLE child ENABLE ROW LEVEL SECURITY;"
            "CREATE POLICY child_all ON child USING (true);"
            "CREATE PUBLICATION app_pub FOR TABLE child, parent;"
            f"CREATE TABLE t{TABLES - 1} (id bigint PRIMARY KEY, body text);"
            f"INSERT INTO t{TABLES - 1} SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
        )
    state = tmp_path / "state"
    src, tgt = pg_source.url(source_db), pg_target.url(target_db)
    log = tmp_path / "copy.log"
    proc = _start_copy(src, tgt, state, log, jobs=2)
    try:
        with _last_table_held(pg_target, target_db):
            loaded = {"public.child", "public.parent"}
            _wait_for(lambda: loaded <= {e["table"] for e in _events(state) if e["event"] == "table"}
                      or proc.poll() is not None)
            assert proc.poll() is None, log.read_text()
            with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as conn:
                conn.execute("INSERT INTO child VALUES (1000, 424242)")
        assert proc.wait(timeout=120) != 0
    finally:
        proc.kill()
        proc.wait()
    failed = log.read_text()
    assert "child_pid_fkey" in failed and "--resume" in failed, failed
    with psycopg.connect(pg_target.dsn(target_db), autocommit=True) as conn:
        conn.execute("DELETE FROM child WHERE id = 1000")

    resumed = subprocess.run(
        [*CLI, "copy", "-s", src, "-t", tgt, "--jobs", "2", "--state-dir", str(state), "--resume"],
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        members = conn.execute("SELECT tablename FROM pg_publication_tables"
                               " WHERE pubname = 'app_pub' ORDER BY 1").fetchall()
        comment = conn.execute("SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint"
                               " WHERE conname = 'child_pid_fkey'").fetchone()
        # An entry that alters an object the target has (the table) is not one to skip.
        secured = conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'child'"
                               ).fetchone()
    assert members == [("child",), ("parent",)] and comment == ("the key",)
    assert secured == (True,)
