"""``copy --roles``: the source's roles on the target, made from the source's catalog.

Why not ``pg_dumpall --roles-only``: it writes ``ALTER ROLE .. NOSUPERUSER .. NOREPLICATION``
for every role, and naming those attributes at all needs superuser, which no RDS user has. Here
each role is created with only what the target user may give:

- ``LOGIN``/``NOLOGIN``, ``INHERIT``/``NOINHERIT``, ``CONNECTION LIMIT``, ``VALID UNTIL``;
- ``CREATEDB`` and ``CREATEROLE`` only if the target user has them itself;
- never ``SUPERUSER``, ``REPLICATION`` or ``BYPASSRLS``, and never a password (none is readable):
  the report names every attribute not carried;
- memberships (``GRANT role TO member``, with the source's ADMIN option), role-level settings and
  comments, each where the target user is allowed to (the others are reported, not fatal).

Roles that already exist on the target are left exactly as they are. Every role is created in one
transaction, so a failure leaves none of them behind; a failed pre-data restore drops them again
and revokes the target user's new memberships (:func:`undo`). After that they stay, and a rerun with ``--resume`` finds them existing.

pg_restore then gives each object its source owner (``ALTER .. OWNER TO``), which a non-superuser
may only do for a role it can ``SET ROLE`` to (PostgreSQL 16+; a member of it before): the target
user is granted each owner role it lacks (``WITH SET TRUE, INHERIT TRUE`` on 16+). INHERIT too,
because pg_restore goes on creating objects as the target user inside schemas it has just given
away (``CREATE SCHEMA app; ALTER SCHEMA app OWNER TO app_owner; CREATE TABLE app.t``): that
needs the owner's CREATE privilege, which ``INHERIT FALSE`` withholds. An owner the target user
can never become (a superuser on the target) is refused before anything is created.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from rdsmigrate.db.selection import Resolved
from rdsmigrate.db.tools import server_major
from rdsmigrate.errors import UserError

# Roles the server or the platform owns: never copied.
_SYSTEM_ROLES = r"^(pg_|rds)"

_SOURCE_ROLES_SQL = """
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text,
       shobj_description(r.oid, 'pg_authid'),
       (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0)
  FROM pg_roles r WHERE r.rolname !~ %s ORDER BY r.rolname
"""

_SOURCE_MEMBERSHIPS_SQL = """
SELECT g.rolname, m.rolname, am.admin_option
  FROM pg_auth_members am
  JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
 WHERE m.rolname !~ %s
 ORDER BY 1, 2
"""

# Objects pg_dump does not dump itself: extension members (CREATE EXTENSION makes them) and
# objects internal to another (a range type's constructor functions, which the server gives to
# the bootstrap superuser; an extension's composite type, a member through its row type).
def _dumped(catalog: str, oid: str, deptypes: str = "'e', 'i'") -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
            f"AND d.objid = {oid} AND d.deptype IN ({deptypes}))")


# Owners of what pg_dump recreates in this database, with the object's schema and, for a
# relation, its name (the selection decides which are copied). Schema public owned by
# pg_database_owner is not ALTERed.
_OWNERS_SQL = f"""
SELECT DISTINCT pg_get_userbyid(owner), nsp, rel FROM (
    SELECT c.relowner AS owner, n.nspname AS nsp, c.relname AS rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
       AND {_dumped('pg_class', 'c.oid')} AND {_dumped('pg_type', 'c.reltype', "'e'")}
    UNION SELECT n.nspowner, n.nspname, NULL FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
       AND n.nspowner <> 'pg_database_owner'::regrole AND {_dumped('pg_namespace', 'n.oid')}
    UNION SELECT p.proowner, n.nspname, NULL FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND {_dumped('pg_proc', 'p.oid')}
    UNION SELECT t.typowner, n.nspname, NULL FROM pg_type t
      JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
       AND t.typtype IN ('d', 'e', 'r', 'm', 'b') AND {_dumped('pg_type', 't.oid')}
    UNION SELECT m.lomowner, NULL, NULL FROM pg_largeobject_metadata m
    -- copy/objects.py grants a large object's privileges as their grantor (SET LOCAL ROLE).
    UNION SELECT a.grantor, NULL, NULL FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a
) o ORDER BY 1
"""


@dataclass
class RolesCopied:
    created: list[str] = field(default_factory=list)
    memberships: int = 0
    not_carried: list[str] = field(default_factory=list)
    """What the target user was not allowed to give, one phrase each, for the report."""
    set_role_granted: list[str] = field(default_factory=list)
    """Owner roles the target user was made a member of, so that it may give objects to them."""


@dataclass(frozen=True)
class _TargetUser:
    name: str
    superuser: bool
    createrole: bool
    createdb: bool
    major: int


def copy_roles(source_conn: psycopg.Connection[Any], target_conn: psycopg.Connection[Any],
               selected: Resolved) -> RolesCopied:
    """Create the source's roles the target lacks, their memberships, and the target user's
    memberships in the owners of the ``selected`` objects; all or nothing (one transaction)."""
    me = _target_user(target_conn)
    existing = {r[0]: bool(r[1]) for r in target_conn.execute(
        "SELECT rolname, rolsuper FROM pg_roles").fetchall()}
    roles = source_conn.execute(_SOURCE_ROLES_SQL, [_SYSTEM_ROLES]).fetchall()
    memberships = source_conn.execute(_SOURCE_MEMBERSHIPS_SQL, [_SYSTEM_ROLES]).fetchall()
    owners = sorted({owner for owner, nsp, rel in source_conn.execute(_OWNERS_SQL).fetchall()
                     if nsp is None or (selected.covers(nsp, rel) if rel is not None
                                        else selected.covers_schema(nsp))})

    unreachable = [o for o in owners if o != me.name and existing.get(o) and not me.superuser]
    if unreachable:
        names = ", ".join(unreachable[:5])
        raise UserError(
            f"--roles: objects of the source are owned by {names}, a superuser on the target, "
            f"and target user {me.name} may not give objects to a superuser",
            fix=f"on the source, REASSIGN OWNED BY {unreachable[0]} TO <an application role>; "
                "or copy without --roles (the target user then owns everything)")

    done = RolesCopied()
    with target_conn.transaction():
        for row in roles:
            if row[0] not in existing:
                _create(target_conn, me, row, done)
        present = set(existing) | set(done.created)
        for group, member, admin in memberships:
            if member in done.created and group in present:
                _grant(target_conn, group, member, admin, done)
            elif member in existing and group in done.created:
                done.not_carried.append(f"membership of {member} in {group} ({member} already "
                                        "existed on the target and is left as it is)")
        for owner in owners:
            if owner != me.name and owner in present:
                _grant_set_role(target_conn, me, owner, done)
    return done


def undo(target_conn: psycopg.Connection[Any], copied: RolesCopied) -> list[str]:
    """Undo :func:`copy_roles` after a failed pre-data restore (which left the roles owning
    nothing): the target user's memberships in roles that existed before are revoked, the roles
    created are dropped; returns the roles that could not be dropped."""
    me = _target_user(target_conn)
    for owner in copied.set_role_granted:
        if owner not in copied.created:
            # Dropped by someone else meanwhile: nothing to revoke.
            with contextlib.suppress(psycopg.Error):
                target_conn.execute(sql.SQL("REVOKE {} FROM {}").format(
                    sql.Identifier(owner), sql.Identifier(me.name)))
    left = []
    for name in copied.created:
        try:
            target_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error:
            left.append(name)
    return left


def _target_user(conn: psycopg.Connection[Any]) -> _TargetUser:
    row = conn.execute("SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                       "WHERE rolname = current_user").fetchone()
    assert row is not None
    return _TargetUser(name=row[0], superuser=row[1], createrole=row[2], createdb=row[3],
                       major=server_major(conn.info.server_version))


def _create(conn: psycopg.Connection[Any], me: _TargetUser, row: tuple[Any, ...],
            done: RolesCopied) -> None:
    (name, superuser, inherit, createrole, createdb, login, replication, bypassrls, connlimit,
     valid_until, comment, settings) = row
    options: list[sql.Composable] = [sql.SQL("LOGIN" if login else "NOLOGIN"),
               sql.SQL("INHERIT" if inherit else "NOINHERIT")]
    for attribute, has, may in (("CREATEDB", createdb, me.createdb or me.superuser),
                                ("CREATEROLE", createrole, me.createrole or me.superuser)):
        if has and may:
            options.append(sql.SQL(attribute))
        elif has:
            done.not_carried.append(f"{attribute} of role {name}")
    for attribute, has in (("SUPERUSER", superuser), ("REPLICATION", replication),
                           ("BYPASSRLS", bypassrls)):
        if has:
            done.not_carried.append(f"{attribute} of role {name}")
    if connlimit != -1:
        options.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(connlimit)))
    if valid_until:
        options.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(valid_until)))
    conn.execute(sql.SQL("CREATE ROLE {} WITH {}").format(
        sql.Identifier(name), sql.SQL(" ").join(options)))
    done.created.append(name)
    if login:
        done.not_carried.append(f"password of login role {name} (set one: ALTER ROLE .. "
                                "PASSWORD)")
    if comment:
        _optional(conn, done, f"comment on role {name}", sql.SQL("COMMENT ON ROLE {} IS {}")
                  .format(sql.Identifier(name), sql.Literal(comment)))
    for setting in settings or []:
        key, _, value = setting.partition("=")
        _optional(conn, done, f"setting {setting} of role {name}",
                  sql.SQL("ALTER ROLE {} SET {} = {}").format(
                      sql.Identifier(name), sql.Identifier(key), sql.Literal(value)))


def _grant(conn: psycopg.Connection[Any], group: str, member: str, admin: bool,
           done: RolesCopied) -> None:
    exists = conn.execute(
        "SELECT 1 FROM pg_auth_members WHERE roleid = to_regrole(%s) AND member = to_regrole(%s)",
        [group, member]).fetchone()
    if exists:
        return
    statement = sql.SQL("GRANT {} TO {}{}").format(
        sql.Identifier(group), sql.Identifier(member),
        sql.SQL(" WITH ADMIN OPTION" if admin else ""))
    if _optional(conn, done, f"membership of {member} in {group}", statement):
        done.memberships += 1


def _grant_set_role(conn: psycopg.Connection[Any], me: _TargetUser, owner: str,
                    done: RolesCopied) -> None:
    """Make the target user able to give objects to ``owner`` and to create objects in what
    ``owner`` owns: SET ROLE and INHERIT (PostgreSQL 16+), a membership before."""
    if me.superuser:
        return
    privileges = ("SET", "USAGE") if me.major >= 16 else ("MEMBER", "MEMBER")
    row = conn.execute("SELECT pg_has_role(current_user, %s, %s) AND "
                       "pg_has_role(current_user, %s, %s)",
                       [owner, privileges[0], owner, privileges[1]]).fetchone()
    if row and row[0]:
        return
    options = sql.SQL(" WITH SET TRUE, INHERIT TRUE" if me.major >= 16 else "")
    grant = sql.SQL("GRANT {} TO {}{}").format(sql.Identifier(owner), sql.Identifier(me.name),
                                                options)
    try:
        with conn.transaction():
            conn.execute(grant)
    except psycopg.errors.InsufficientPrivilege:
        raise UserError(
            f"--roles: objects of the source are owned by {owner}, and target user {me.name} "
            f"may neither SET ROLE {owner} nor grant itself that role (it needs ADMIN OPTION on "
            "it); no role was created",
            fix=f"as a role with ADMIN OPTION on {owner} (a superuser, or its creator): "
                f"{grant.as_string(conn)}; then rerun") from None
    done.set_role_granted.append(owner)


def _optional(conn: psycopg.Connection[Any], done: RolesCopied, what: str,
              statement: sql.Composed) -> bool:
    """Run a statement the target user may not be allowed to; a refusal is reported, not fatal
    (in a savepoint, so the transaction goes on)."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        done.not_carried.append(what)
        return False
    return True
