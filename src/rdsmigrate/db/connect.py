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


@dataclass(frozen=True)
class _Cause:
    """One way a connection fails: a pattern of libpq's or the server's message (psycopg gives
    no SQLSTATE for a failed connection attempt, so the text is all there is), the problem and
    the fix, both formatted with the endpoint's ``user``, ``dbname``, ``host``, ``port``."""

    pattern: str
    problem: str
    fix: str
    quote: bool = False
    """Whether the server's own words add to the problem (which host, which certificate)."""
    without_tls: bool = False
    """Applies only when the connection did not try TLS first (sslmode disable or allow)."""


# In order: the first cause whose pattern matches decides. libpq prefixes every failure with
# 'connection to server at "H", port P failed:', so that text tells nothing of the cause.
_CAUSES = (
    _Cause(r"must be superuser or replication role to start walsender"
           r"|permission denied to start WAL sender|must have (the )?replication",
           "user {user} may not open a replication connection (it needs the REPLICATION "
           "attribute)",
           "ALTER ROLE {user_sql} REPLICATION; (on RDS: GRANT rds_replication TO {user_sql};)"),
    _Cause(r"password authentication failed|authentication failed for user"
           r"|no password supplied|password is required",
           "password authentication failed for user {user}",
           "fix the password in the connection string, PGPASSWORD or ~/.pgpass (and check that "
           "user {user} exists)"),
    _Cause(r'database "[^"]*" does not exist',
           "database {dbname_repr} does not exist",
           "create it (createdb {dbname}) or fix dbname in the connection string"),
    _Cause(r'role "[^"]*" does not exist',
           "user {user_repr} does not exist on the server",
           "fix user in the connection string"),
    _Cause(r"no pg_hba\.conf entry for replication",
           "the server's pg_hba.conf has no entry for a replication connection from this host "
           "as {user}",
           "add 'host replication {user} <this host>/32 scram-sha-256' to pg_hba.conf and "
           "reload (RDS needs none: grant rds_replication instead)", quote=True),
    # The server cannot say whether a hostssl line would have matched; a connection that never
    # tried TLS may well be refused for that alone (RDS with rds.force_ssl=1 is).
    _Cause(r"no pg_hba\.conf entry for .*(no encryption|SSL off)",
           "the server's pg_hba.conf has no entry for an unencrypted connection from this host "
           "as {user} (the connection did not try TLS)",
           "connect with sslmode=require (or verify-full with sslrootcert= the server's CA; on "
           "RDS with rds.force_ssl=1 the RDS global bundle), or add a pg_hba.conf entry for it",
           quote=True, without_tls=True),
    _Cause(r"no pg_hba\.conf entry",
           "the server's pg_hba.conf has no entry for this host, user {user} and database "
           "{dbname}",
           "add one ('host {dbname} {user} <this host>/32 scram-sha-256') and reload the "
           "server (on RDS: the security group decides who reaches it)", quote=True),
    _Cause(r"pg_hba\.conf rejects connection",
           "the server's pg_hba.conf rejects user {user} from this host",
           "ask the server's administrator to allow it (a 'reject' line in pg_hba.conf)", quote=True),
    _Cause(r"server does not support SSL, but SSL was required",
           "the server at {host}:{port} does not offer TLS, and the connection asks for it",
           "enable ssl on the server, or connect with sslmode=prefer"),
    _Cause(r"certificate verify failed|root certificate file .* does not exist"
           r"|server certificate for .* does not match",
           "the server's TLS certificate could not be verified",
           "set sslrootcert to the CA that signed it (on RDS: the global bundle, "
           "global-bundle.pem), or use sslmode=require to encrypt without verifying", quote=True),
    _Cause(r"could not translate host name|failed to resolve host|name or service not known"
           r"|nodename nor servname|temporary failure in name resolution",
           "cannot reach the server: host name {host} does not resolve",
           "check host and port in the connection string (and the DNS this machine uses)"),
    _Cause(r"connection refused",
           "cannot reach the server: nothing accepts connections at {host}:{port}",
           "check host and port, and that the server is running and listens on that address "
           "(listen_addresses)"),
    _Cause(r"timeout expired|timed out|no route to host|network is unreachable",
           "cannot reach the server: no answer from {host}:{port}",
           "check host and port, and that firewalls or security groups let this machine in "
           "(on RDS: the DB security group's inbound rule for this host)"),
    _Cause(r"too many clients|remaining connection slots are reserved",
           "the server at {host}:{port} has no free connection slot",
           "close idle sessions, or raise max_connections (on RDS: in the DB parameter group)"),
    _Cause(r"the database system is (starting up|shutting down|in recovery mode)",
           "the server at {host}:{port} is not accepting connections yet",
           "wait until it has started, then rerun"),
)


def _server_says(text: str) -> str:
    """The server's or libpq's own words, without libpq's 'connection to server ... failed:'."""
    first = (text.strip().splitlines() or ["connection failed"])[0]
    first = re.sub(r'^connection failed: (connection to server at "[^"]*"(, port \d+)? '
                   r'failed: )?', "", first)
    return re.sub(r"^(FATAL|ERROR):\s+", "", first)


def explain_connect_error(ep: Endpoint, exc: psycopg.Error) -> UserError:
    """Turn a libpq failure into one line, the problem and its fix; never the password."""
    msg = ep.redact(str(exc)) or type(exc).__name__
    where = f"{ep.role} {ep.describe()}"
    quoted = _quote_ident(ep.user)
    values = {"user": ep.user, "user_sql": quoted, "dbname": ep.dbname, "host": ep.host,
              "port": ep.port, "user_repr": repr(ep.user), "dbname_repr": repr(ep.dbname)}
    said = _server_says(msg)
    timed_out = isinstance(exc, psycopg.errors.ConnectionTimeout)
    tried_tls = str(ep.params.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer") not in (
        "disable", "allow")
    for cause in _CAUSES:
        if cause.without_tls and tried_tls:
            continue
        if re.search(cause.pattern, "timeout expired" if timed_out else msg, re.IGNORECASE):
            problem = cause.problem.format(**values)
            shown = f" ({said})" if cause.quote else ""
            return UserError(ep.redact(f"{where}: {problem}{shown}"),
                             fix=ep.redact(cause.fix.format(**values)))
    return UserError(ep.redact(f"{where}: cannot connect: {said}"),
                     fix="check the connection string against the server's log")


def _quote_ident(name: str) -> str:
    """A role name as SQL needs it in the statements a fix suggests (no server to ask here)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


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
