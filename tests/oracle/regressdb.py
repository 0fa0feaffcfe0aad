"""PostgreSQL 15's own regression database, built once per machine and cached.

The regression suite (``parallel_schedule``) leaves behind a database nobody here wrote: 500+
tables of every kind, odd types, rules, partitions, policies, large objects. Building it needs
``pg_regress`` and the C module ``regress.so`` of the same major as the server, so we build them
from Debian's ``postgresql-15`` source package (the one the machine's server came from), run the
schedule against a throwaway cluster of the machine's own server binaries, and keep:

- ``regression.dump``  ``pg_dump -Fc`` of the ``regression`` database;
- ``roles.sql``        the roles it refers to (``pg_dumpall --roles-only``, without the superuser);
- ``lib/*.so``         ``regress.so`` and the two contrib/spi modules the triggers test loads.
  The dump's C functions name these files: the build tree's paths are rewritten to ``lib/``
  before dumping, so the build tree itself is deleted.

under ``$RDSMIGRATE_CACHE`` or ``/var/cache/rdsmigrate`` (root: the cluster's OS user must read the
modules; ``~/.cache`` of root is private) or ``~/.cache/rdsmigrate``, keyed by the server version.
Everything runs as the master user of a real install would not: the build is setup, done as the
superuser of its own throwaway cluster.

Run by hand: ``python -m tests.oracle.regressdb`` (prints the cache directory and timings).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from rdsmigrate.localpg import LocalCluster, find_bindir

SOURCES_LIST = Path("/etc/apt/sources.list.d/rdsmigrate-deb-src.sources")
DEB_SRC = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
MODULES = ("regress", "autoinc", "refint")
FORMAT = "v2"
"""Part of the cache key: bump it when what this module builds changes."""
BUILDER = "postgres"
"""pg_regress runs as a superuser of this name, so the objects it leaves are owned by the role the
test clusters call their master user: restored there, the master user owns (and may dump) them."""


def cache_root() -> Path:
    if env := os.environ.get("RDSMIGRATE_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/rdsmigrate")
    return Path.home() / ".cache" / "rdsmigrate"


def server_version(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.split(")")[1].split()[0]  # "postgres (PostgreSQL) 15.18 (Debian ...)" -> 15.18


def cache_dir(bindir: Path) -> Path:
    return cache_root() / f"regress-{server_version(bindir)}-{FORMAT}"


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _debian_version() -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postgresql-15"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def fetch_source(work: Path) -> Path:
    """``apt-get source postgresql-15`` (the installed version when the archive has it)."""
    if os.geteuid() == 0:
        if not SOURCES_LIST.exists():
            SOURCES_LIST.write_text(DEB_SRC)
            _run(["apt-get", "update", "-qq"])
        # dpkg-dev brings make, patch, bzip2 and xz; the compiler is ours to ask for.
        missing = [pkg for pkg, tool in (("dpkg-dev", "dpkg-source"), ("gcc", "gcc"),
                                         ("libc6-dev", None)) if (tool and shutil.which(tool) is None)
                   or (tool is None and not Path("/usr/include/stdio.h").exists())]
        if missing:
            _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    version = _debian_version()
    for spec in ([f"postgresql-15={version}"] if version else []) + ["postgresql-15"]:
        proc = subprocess.run(["apt-get", "source", "-qq", spec], cwd=work, capture_output=True,
                              text=True)
        if proc.returncode == 0:
            break
    else:
        raise RuntimeError(f"apt-get source postgresql-15 failed: {proc.stderr[-2000:]} (as root "
                           f"this adds {SOURCES_LIST}; otherwise add a deb-src entry for bookworm)")
    return next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("postgresql-15"))


def build_regress(src: Path) -> Path:
    """configure without optional libraries, then build only src/test/regress (pg_regress,
    regress.so, and refint/autoinc which its Makefile copies in from contrib/spi)."""
    _run(["./configure", "--without-icu", "--without-readline", "--without-zlib",
          "--without-openssl", "--without-llvm", "--without-lz4", "--without-zstd"], cwd=src)
    # Run under `make test`, make's own MAKELEVEL/MAKEFLAGS reach us: PostgreSQL's makefiles
    # build the generated headers (utils/errcodes.h) first only at MAKELEVEL 0, so a cold build
    # here failed. A clean make environment, and the headers asked for by name.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    _run(["make", "-s", "-C", "src/backend", "generated-headers"], cwd=src, env=env)
    _run(["make", "-s", "-j2", "-C", "src/test/regress", "all"], cwd=src, env=env)
    regress = src / "src" / "test" / "regress"
    for module in MODULES:
        if not (regress / f"{module}.so").exists():
            _run(["make", "-s", "-C", "contrib/spi"], cwd=src, env=env)
            shutil.copy(src / "contrib" / "spi" / f"{module}.so", regress / f"{module}.so")
    return regress


def run_schedule(regress: Path, bindir: Path, out: Path) -> dict[str, str]:
    """parallel_schedule against a throwaway cluster; dumps the database into ``out``."""
    lib = out / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        shutil.copy(regress / f"{module}.so", lib / f"{module}.so")
    summary = {}
    with LocalCluster(bindir=bindir, name="regressbuild", superuser="rdsadmin") as cluster:
        with psycopg.connect(cluster.dsn(user="rdsadmin"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                sql.Identifier(BUILDER), sql.Literal(cluster.password)))
        env = {**os.environ, "PGPASSWORD": cluster.password, "PGHOST": "127.0.0.1",
               "PGPORT": str(cluster.port), "PGUSER": BUILDER, "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(
            [str(regress / "pg_regress"), f"--inputdir={regress}", f"--bindir={bindir}",
             f"--dlpath={regress}", "--max-concurrent-tests=20", "--host=127.0.0.1",
             f"--port={cluster.port}", f"--user={BUILDER}",
             f"--schedule={regress / 'parallel_schedule'}"],
            cwd=regress, env=env, capture_output=True, text=True,
        )
        verdict = [line.strip(" =") for line in proc.stdout.splitlines()
                   if re.search(r"tests? (passed|failed)|All \d+ tests", line)]
        summary["pg_regress"] = "; ".join(verdict) or proc.stdout[-300:]
        with psycopg.connect(cluster.dsn("regression", user="rdsadmin"), autocommit=True) as conn:
            # C functions name the build tree's modules: point them at the cached copies.
            for module in MODULES:
                conn.execute("UPDATE pg_proc SET probin = %s WHERE probin ~ %s",
                             [str(lib / module), f"/{module}(\\.so)?$"])
            row = conn.execute("SELECT count(*) FROM pg_class WHERE relkind IN ('r','p') AND "
                               "relnamespace::regnamespace::text NOT IN "
                               "('pg_catalog','information_schema','pg_toast')").fetchone()
            summary["tables"] = str(row[0] if row else "?")
        dump = out / "regression.dump.partial"
        _run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), "-d", cluster.dsn("regression",
              user="rdsadmin")])
        roles = subprocess.run([str(bindir / "pg_dumpall"), "--roles-only", "-d",
                                cluster.dsn(user="rdsadmin")],
                               capture_output=True, text=True, check=True).stdout
        kept = [line for line in roles.splitlines()
                if not re.search(r"ROLE (rdsadmin|postgres)\b", line)]
        (out / "roles.sql").write_text("\n".join(kept) + "\n")
        dump.rename(out / "regression.dump")
    return summary


def ensure_regression_dump(bindir: Path | None = None) -> Path:
    """The cache directory holding regression.dump, roles.sql and lib/; built when absent."""
    bindir = bindir or find_bindir(15)
    out = cache_dir(bindir)
    if (out / "regression.dump").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    # One build at a time (pytest-xdist workers, parallel runs): the others wait and reuse it.
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "regression.dump").exists():
            _build(bindir, out)
    return out


def _build(bindir: Path, out: Path) -> None:
    os.chmod(out, 0o755)
    with tempfile.TemporaryDirectory(prefix="rdsmigrate-regress-build-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # the server (another OS user when we are root) reads data files
        started = time.monotonic()
        src = fetch_source(work)
        fetched = time.monotonic()
        regress = build_regress(src)
        built = time.monotonic()
        summary = run_schedule(regress, bindir, out)
        done = time.monotonic()
    (out / "BUILD.txt").write_text(
        f"source {src.name}: fetched in {fetched - started:.0f}s, built in {built - fetched:.0f}s,"
        f" schedule + dump in {done - built:.0f}s\n"
        + "".join(f"{k}: {v}\n" for k, v in summary.items()))


if __name__ == "__main__":
    t0 = time.monotonic()
    where = ensure_regression_dump()
    print(where, f"{time.monotonic() - t0:.0f}s")
    sys.stdout.write((where / "BUILD.txt").read_text())
