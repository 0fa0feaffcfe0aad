"""``copy --roles`` as the user RDS gives (CREATEDB CREATEROLE, a member of an
``rds_superuser``-like role, never superuser) into PostgreSQL 18, where giving an object to a role
needs the right to SET ROLE to it.

Roles are cluster-wide: each test names its roles with a fresh suffix and drops them from both
clusters afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from rdsmigrate.cli import app
from rdsmigrate.localpg import LocalCluster
from tests import test_preflight
from tests.conftest import admin, superuser_url
from tests.test_preflight import fingerprint, master_user

# A fresh database on the PostgreSQL 18 cluster, the fixture test_preflight defines.
target18_db = test_preflight.target18_db


@pytest.fixture
def suffix(pg_source: LocalCluster, pg18_target: LocalCluster) -> Iterator[str]:
    """A fresh suffix for role names; every role ending in it is dropped afterwards."""
    tag = f"_{os.getpid()}_{secrets.token_hex(2)}"
    yield tag
    for cluster in (pg_source, pg18_target):
        with admin(cluster) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [f"%{tag}"]).fetchall()]
            databases = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn").fetchall()]
        for db in databases:
            with admin(cluster, db) as conn:
                for name in names:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with admin(cluster) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _copy(source: str, target: str, tmp_path: Path) -> Any:
    """``copy --roles`` from a self-managed source read as its superuser (which sees every
    role's tables) into the RDS-like target as a master user."""
    return CliRunner().invoke(app, [
        "copy", "--roles", "-s", source, "-t", target, "--jobs", "1", "--json",
        "--state-dir", str(tmp_path / "state"), "--report", str(tmp_path / "report.json")])


def _roles(cluster: LocalCluster, tag: str) -> dict[str, tuple[Any, ...]]:
    with admin(cluster) as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(
            """SELECT rolname, rolcanlogin, rolinherit, rolsuper, rolreplication, rolbypassrls,
                      rolcreatedb, rolcreaterole, rolconnlimit, rolvaliduntil IS NOT NULL,
                      shobj_description(oid, 'pg_authid'),
                      (SELECT setconfig FROM pg_db_role_setting s
                        WHERE s.setrole = r.oid AND s.setdatabase = 0)
                 FROM pg_roles r WHERE rolname LIKE %s ORDER BY 1""", [f"%{tag}"]).fetchall()}


def test_copy_roles_as_a_master_user_into_postgresql_18(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    suffix: str, tmp_path: Path,
) -> None:
    owner, reader, boss, streamer = (f"{n}{suffix}" for n in ("owner", "reader", "boss", "streamer"))
    with admin(pg_source, source_db) as conn:
        conn.execute(f"""
            CREATE ROLE {owner} LOGIN CREATEDB CONNECTION LIMIT 7 VALID UNTIL '2099-01-01';
            CREATE ROLE {reader} NOLOGIN NOINHERIT;
            CREATE ROLE {boss} SUPERUSER;
            CREATE ROLE {streamer} LOGIN REPLICATION BYPASSRLS;
            GRANT {reader} TO {owner} WITH ADMIN OPTION;
            GRANT pg_read_all_data TO {streamer};
            ALTER ROLE {owner} SET work_mem = '8MB';
            ALTER ROLE {streamer} SET log_statement = 'all';
            COMMENT ON ROLE {owner} IS 'owns the app';
            CREATE SCHEMA app AUTHORIZATION {owner};
            CREATE TABLE app.items (id int PRIMARY KEY, name text);
            INSERT INTO app.items SELECT g, 'n' || g FROM generate_series(1, 50) g;
            ALTER TABLE app.items OWNER TO {owner};
            GRANT SELECT ON app.items TO {reader};
        """)
    with master_user(pg18_target, target18_db) as (master, dsn):
        result = _copy(superuser_url(pg_source, source_db), dsn, tmp_path)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)["result"]
        # Other tests' roles live on the shared source cluster too: they come along, and go.
        others = [r for r in report["roles_created"] if not r.endswith(suffix)]
        with admin(pg18_target) as conn:
            for name in others:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        assert sorted(set(report["roles_created"]) - set(others)) == sorted(
            [owner, reader, boss, streamer])

        created = _roles(pg18_target, suffix)
        # login, inherit, super, replication, bypassrls, createdb, createrole, connlimit,
        # valid until, comment, settings
        assert created[owner] == (True, True, False, False, False, True, False, 7, True,
                                  "owns the app", ["work_mem=8MB"])
        assert created[reader][:3] == (False, False, False)
        assert created[boss][2] is False
        assert created[streamer][:5] == (True, True, False, False, False)
        assert created[streamer][10] is None  # log_statement needs superuser: not carried
        notes = " ".join(report["notes"])
        for phrase in (f"SUPERUSER of role {boss}", f"REPLICATION of role {streamer}",
                       f"BYPASSRLS of role {streamer}", f"password of login role {owner}",
                       f"membership of {streamer} in pg_read_all_data",
                       f"setting log_statement=all of role {streamer}"):
            assert phrase in notes, notes

        with admin(pg18_target, target18_db) as conn:
            assert conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'app.items'::regclass"
            ).fetchone() == (owner,)
            assert conn.execute("SELECT has_table_privilege(%s, 'app.items', 'SELECT')",
                                [reader]).fetchone() == (True,)
            assert conn.execute("SELECT count(*) FROM app.items").fetchone() == (50,)
            # Admin option carried; the master user may SET ROLE to the owner and has its
            # privileges (it created objects in the owner's schema).
            assert conn.execute(
                """SELECT am.admin_option FROM pg_auth_members am
                    WHERE am.roleid = to_regrole(%s) AND am.member = to_regrole(%s)""",
                [reader, owner]).fetchone() == (True,)
            assert conn.execute(
                "SELECT pg_has_role(%s, %s, 'SET'), pg_has_role(%s, %s, 'USAGE')",
                [master, owner, master, owner]).fetchone() == (True, True)


def test_an_owner_the_master_user_cannot_become_leaves_no_role_behind(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    suffix: str, tmp_path: Path,
) -> None:
    """The target already has the owner role (made by its superuser, so the master user holds no
    ADMIN on it): the copy stops before the schema, and the roles it had created are gone."""
    legacy, fresh = f"legacy{suffix}", f"fresh{suffix}"
    with admin(pg_source, source_db) as conn:
        conn.execute(f"CREATE ROLE {legacy}; CREATE ROLE {fresh};"
                     f"CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO {legacy}")
    with admin(pg18_target) as conn:
        conn.execute(f"CREATE ROLE {legacy}")
    with master_user(pg18_target, target18_db) as (master, dsn):
        before = fingerprint(pg18_target, target18_db)
        result = _copy(superuser_url(pg_source, source_db), dsn, tmp_path)
        assert result.exit_code == 2, result.output
        error = json.loads(result.stdout)["error"]
        assert f"owned by {legacy}" in error["message"] and "no role was created" in error["message"]
        assert f'GRANT "{legacy}" TO "{master}" WITH SET TRUE, INHERIT TRUE' in error["fix"]
        assert fingerprint(pg18_target, target18_db) == before
        assert fresh not in _roles(pg18_target, suffix)


def test_objects_owned_by_a_target_superuser_are_refused_up_front(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    tmp_path: Path,
) -> None:
    """The source's objects belong to its superuser, a superuser on the target too (``rdsadmin``
    on RDS): no master user may give objects to it."""
    with admin(pg_source, source_db) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with master_user(pg18_target, target18_db) as (_, dsn):
        before = fingerprint(pg18_target, target18_db)
        result = _copy(superuser_url(pg_source, source_db), dsn, tmp_path)
        assert result.exit_code == 2, result.output
        superuser = pg18_target.superuser
        assert f"owned by {superuser}, a superuser on the target" in result.stderr
        assert f"REASSIGN OWNED BY {superuser}" in result.stderr
        assert fingerprint(pg18_target, target18_db) == before


def test_a_failed_pre_data_restore_takes_back_the_roles_and_memberships_it_made(
    pg_source: LocalCluster, source_db: str, pg18_target: LocalCluster, target18_db: str,
    suffix: str, tmp_path: Path,
) -> None:
    """A view over an excluded table fails the pre-data restore (exit 2, nothing written): the
    role this run created is dropped again, and the master user's new membership in an owner
    that already existed is revoked."""
    existing, fresh = f"existing{suffix}", f"fresh{suffix}"
    with admin(pg_source, source_db) as conn:
        conn.execute(f"""CREATE ROLE {existing}; CREATE ROLE {fresh};
            CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY);
            ALTER TABLE kept OWNER TO {existing};
            CREATE VIEW v AS SELECT id FROM t; ALTER VIEW v OWNER TO {fresh}""")
    with master_user(pg18_target, target18_db) as (master, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:  # its creator holds ADMIN, no SET
            conn.execute(f"CREATE ROLE {existing}")

        def memberships() -> list[tuple[str, ...]]:
            with admin(pg18_target) as conn:
                return conn.execute(
                    """SELECT g.rolname, m.rolname, am.set_option::text FROM pg_auth_members am
                         JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
                        WHERE m.rolname = %s ORDER BY 1, 2""", [master]).fetchall()

        before = fingerprint(pg18_target, target18_db), memberships()
        result = CliRunner().invoke(app, [
            "copy", "--roles", "-s", superuser_url(pg_source, source_db), "-t", dsn,
            "--exclude-table", "t", "--jobs", "1", "--state-dir", str(tmp_path / "state")])
        assert result.exit_code == 2, result.output
        assert "restoring the pre-data schema" in result.stderr
        assert (fingerprint(pg18_target, target18_db), memberships()) == before
        assert fresh not in _roles(pg18_target, suffix)
