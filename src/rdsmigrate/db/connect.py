"""The one way this package opens a PostgreSQL connection.

An :class:`Endpoint` is a validated libpq connection string or URL. It knows how to describe
itself without its password (for messages, progress and reports) and how to hand its password to
the PostgreSQL client programs through the environment rather than the command line, where any
local user could read it in ``ps``. Connection failures become one-line :class:`UserError`s that
name the side, the problem and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from rdsmigrate.db import aws
from rdsmigrate.errors import UserError

APPLICATION_NAME = "rdsmigrate"

# Every password an Endpoint was built with, so any message can be scrubbed before it is shown,
# whichever layer produced it (libpq, a client program, an internal error).
_SECRETS: set[str] = set()


def redact_secrets(text: str) -> str:
    """Replace every known password, and any ``password=...`` pair, with asterisks."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "********")
    text = re.sub(r"(password\s*=\s*)\S+", r"\1********", text)
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1********@", text)
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Endpoint:
    """A database the tool talks to: ``role`` is "source" or "target", for messages."""

    role: str
    conninfo: str

    @classmethod
    def parse(cls, role: str, text: str | None, env_var: str | None = None) -> Endpoint:
        if not text:
            hint = f" or set {env_var}" if env_var else ""
            raise UserError(f"no {role} database given: pass --{role} CONNINFO{hint}")
        if aws.is_aws_spec(text):
            found = aws.resolve(role, text)
            _SECRETS.add(found["password"])
            return cls(role=role, conninfo=pg_conninfo.make_conninfo("", **found))
        try:
            params = pg_conninfo.conninfo_to_dict(text)
        except psycopg.ProgrammingError as exc:
            raise UserError(
                f"--{role} is not a valid libpq connection string or URL ({_first_line(exc)}): "
                "use 'host=H port=P dbname=D user=U', 'postgresql://U@H:P/D', "
                "'stack:STACK_NAME' or 'secret:SECRET_ARN'"
            ) from None
        if params.get("password"):
            _SECRETS.add(str(params["password"]))
        return cls(role=role, conninfo=pg_conninfo.make_conninfo("", **params))

    @property
    def params(self) -> dict[str, Any]:
        return dict(pg_conninfo.conninfo_to_dict(self.conninfo))

    @property
    def password(self) -> str | None:
        return self.params.get("password") or None

    @property
    def dbname(self) -> str:
        p = self.params
        return str(p.get("dbname") or os.environ.get("PGDATABASE") or self.user)

    @property
    def user(self) -> str:
        p = self.params
        return str(p.get("user") or os.environ.get("PGUSER") or _os_user())

    @property
    def host(self) -> str:
        p = self.params
        return str(p.get("host") or p.get("hostaddr") or os.environ.get("PGHOST") or "localhost")

    @property
    def port(self) -> str:
        return str(self.params.get("port") or os.environ.get("PGPORT") or "5432")

    def describe(self) -> str:
        """``user@host:port/dbname``: safe to print anywhere."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def with_dbname(self, dbname: str) -> Endpoint:
        params = self.params
        params["dbname"] = dbname
        return Endpoint(self.role, pg_conninfo.make_conninfo("", **params))

    def without_password(self) -> str:
        params = self.params
        params.pop("password", None)
        return pg_conninfo.make_conninfo("", **params)

    def client_env(self) -> dict[str, str]:
        """Environment for pg_dump/psql/pg_restore: the password travels here, not in argv."""
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGAPPNAME", APPLICATION_NAME)
        env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
        return env

    def redact(self, text: str) -> str:
        """Remove passwords from a message, whatever produced it."""
        pw = self.password
        if pw:
            _SECRETS.add(pw)
        return redact_secrets(text)


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def explain_connect_error(ep: Endpoint, exc: psycopg.Error) -> UserError:
    """Turn a libpq failure into one line with the fix; never includes the password."""
    msg = ep.redact(str(exc))
    where = f"{ep.role} {ep.describe()}"
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        text = (
            f"{where}: password authentication failed for user {ep.user}: fix the password in the "
            "connection string, PGPASSWORD or ~/.pgpass"
        )
    elif "does not exist" in low and "database" in low:
        text = (
            f"{where}: database {ep.dbname!r} does not exist: create it (createdb {ep.dbname}) "
            "or fix dbname in the connection string"
        )
    elif "role" in low and "does not exist" in low:
        text = f"{where}: user {ep.user!r} does not exist on the server: fix user in the connection string"
    elif "pg_hba.conf" in low:
        text = (
            f"{where}: the server's pg_hba.conf rejects this connection: add an entry for this "
            "host and user (on RDS: check the security group and parameter group)"
        )
    elif any(
        s in low
        for s in ("connection refused", "timeout expired", "could not translate host",
                  "no route to host", "network is unreachable", "name or service not known",
                  "could not connect", "connection to server")
    ):
        text = (
            f"{where}: cannot reach the server ({_first_line(exc)}): "
            "check host and port, that the server is running, and that firewalls or security "
            "groups let this machine in"
        )
    else:
        text = f"{where}: cannot connect: {ep.redact(_first_line(exc))}"
    return UserError(ep.redact(text))


def connect(
    ep: Endpoint,
    *,
    autocommit: bool = False,
    replication: str | None = None,
    application_name: str = APPLICATION_NAME,
) -> psycopg.Connection[Any]:
    """Open a connection; failures become a one-line UserError naming the fix.

    ``replication="database"`` opens a logical replication (walsender) connection, used to create
    the slot whose exported snapshot the copy reads from.
    """
    kwargs: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    if replication:
        kwargs["replication"] = replication
    try:
        return psycopg.connect(ep.conninfo, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise explain_connect_error(ep, exc) from None
