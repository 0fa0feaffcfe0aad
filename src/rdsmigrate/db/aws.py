"""Connection strings from AWS: the staging stack's outputs and its Secrets Manager secret.

``--target stack:RdsMigrationStack`` is how the tool finds the database this repository's CDK
stack deployed, without anyone copying a host name or a password by hand: CloudFormation's
``DescribeStacks`` gives the outputs ``DatabaseEndpoint``, ``DatabasePort``, ``DatabaseName`` and
``DatabaseSecretArn``, and Secrets Manager gives the user and the current password (read afresh
by each command, so a rotation between two commands does no harm). ``secret:ARN_OR_NAME`` reads
an RDS-style secret alone (``host``, ``port``, ``username``, ``password``, ``dbname``), as RDS
and the CDK write them.

Both take libpq parameters after ``?`` (``stack:NAME?sslmode=verify-full&sslrootcert=...``) and
``region=``; without it boto3's usual chain decides (``AWS_REGION``, the profile). TLS is
``sslmode=require`` unless given: the stack's parameter group refuses anything else.
boto3 is imported only here and only when such a spec is used: the plain path stays fast.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from rdsmigrate.errors import UserError

PREFIXES = ("stack:", "secret:")
OUTPUTS = ("DatabaseEndpoint", "DatabasePort", "DatabaseName", "DatabaseSecretArn")
_ENDPOINT_NEEDS = ("cloudformation:DescribeStacks, secretsmanager:GetSecretValue and kms:Decrypt "
                   "on the secret's key")


def is_aws_spec(text: str) -> bool:
    return text.startswith(PREFIXES)


def resolve(role: str, text: str) -> dict[str, str]:
    """libpq parameters (password included) for a ``stack:`` or ``secret:`` spec."""
    kind, _, rest = text.partition(":")
    name, _, query = rest.partition("?")
    extra = dict(parse_qsl(query, keep_blank_values=True))
    region = extra.pop("region", None) or None
    if not name:
        raise UserError(f"--{role} {kind}: needs a name: '{kind}:NAME' "
                        f"(e.g. {'stack:RdsMigrationStack' if kind == 'stack' else 'secret:ARN'})")
    if "password" in extra:
        raise UserError(f"--{role}: a {kind}: spec takes its password from Secrets Manager; "
                        "remove password= from it")
    clients = Clients(f"--{role}", region)
    if kind == "stack":
        outputs = clients.stack_outputs(name)
        secret = clients.secret(outputs["DatabaseSecretArn"])
        params = {"host": outputs["DatabaseEndpoint"], "port": outputs["DatabasePort"],
                  "dbname": outputs["DatabaseName"]}
    else:
        secret = clients.secret(name)
        params = {k: str(secret[k]) for k in ("host", "port", "dbname") if secret.get(k)}
        if "host" not in params:
            raise UserError(f"--{role}: the secret {name} has no 'host' field (not an RDS "
                            "database secret): use a connection string, or the stack: form")
    for field in ("username", "password"):
        if not secret.get(field):
            raise UserError(f"--{role}: the secret behind {text.split('?')[0]} has no "
                            f"'{field}' field")
    params.update(user=str(secret["username"]), password=str(secret["password"]))
    params.setdefault("sslmode", "require")
    params.update(extra)
    return params


class NotFound(UserError):
    """What AWS was asked for does not exist (a caller may expect that: a log stream not yet
    created)."""


class Clients:
    """boto3 clients for one region, with AWS errors turned into one-line UserErrors.

    ``who`` starts every message (``--target``, ``aws run``); ``needs`` names the IAM actions the
    caller must hold, shown when AWS refuses. Also used by :mod:`rdsmigrate.remote`, so both
    share one way of finding the region and the credentials.
    """

    def __init__(self, who: str, region: str | None, *, needs: str = _ENDPOINT_NEEDS,
                 region_hint: str = "add '?region=REGION' to the spec or set AWS_REGION") -> None:
        import boto3

        self.who, self.needs, self.region_hint = who, needs, region_hint
        self._session = boto3.session.Session(region_name=region)
        self._clients: dict[str, Any] = {}
        self.region = self._session.region_name

    def client(self, service: str) -> Any:
        from botocore.exceptions import NoRegionError

        if service not in self._clients:
            try:
                self._clients[service] = self._session.client(service)
            except NoRegionError:
                raise UserError(f"{self.who}: no AWS region: {self.region_hint}") from None
        return self._clients[service]

    def stack_outputs(self, stack: str, required: tuple[str, ...] = OUTPUTS,
                      missing_hint: str = "is it this project's staging stack, fully deployed"
                      ) -> dict[str, str]:
        reply = self.call("cloudformation", "describe_stacks", f"the stack {stack}",
                          StackName=stack)
        stacks = reply.get("Stacks") or []
        if not stacks:
            raise self._not_found(f"the stack {stack}")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs") or []}
        missing = [k for k in required if not outputs.get(k)]
        if missing:
            raise UserError(
                f"{self.who}: the stack {stack} ({self.region}) has no output "
                f"{', '.join(missing)}: {missing_hint} "
                f"(status {stacks[0].get('StackStatus', '?')})?")
        return outputs

    def secret(self, secret_id: str) -> dict[str, Any]:
        reply = self.call("secretsmanager", "get_secret_value", f"the secret {secret_id}",
                          SecretId=secret_id)
        try:
            value = json.loads(reply.get("SecretString") or "")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise UserError(f"{self.who}: the secret {secret_id} is not a JSON object of "
                            "database credentials")
        return value

    def call(self, service: str, operation: str, what: str, *, verb: str = "read",
             **kwargs: Any) -> dict[str, Any]:
        """``operation`` of ``service`` (boto3's snake_case name); ``verb`` and ``what`` say
        in messages what it was for ("read" "the stack X")."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        method = getattr(self.client(service), operation)
        try:
            reply: dict[str, Any] = method(**kwargs)
        except NoCredentialsError:
            raise UserError(f"{self.who}: no AWS credentials to {verb} {what}: configure a "
                            "profile (aws configure / AWS_PROFILE) or set AWS_ACCESS_KEY_ID "
                            "and AWS_SECRET_ACCESS_KEY") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            # CloudFormation says a stack is missing with a ValidationError, Secrets Manager
            # with ResourceNotFoundException.
            if code == "ResourceNotFoundException" or (
                    code == "ValidationError" and "does not exist" in message):
                raise self._not_found(what) from None
            hint = (f" (the caller needs {self.needs})"
                    if "AccessDenied" in code or "Unauthorized" in code else "")
            raise UserError(f"{self.who}: AWS refused to {verb} {what}: {code}: "
                            f"{message}{hint}") from None
        except BotoCoreError as exc:
            raise UserError(f"{self.who}: could not reach AWS to {verb} {what}: {exc}") from None
        return reply

    def _not_found(self, what: str) -> NotFound:
        return NotFound(f"{self.who}: {what} does not exist in {self.region}: check the name "
                         f"and the region ({self.region_hint}), or deploy the stack "
                         "(cdk deploy)")
