"""The stack's settings: read once from CDK context, validated before any construct is built.

A user mistake (a typo in `-c stagingVpcCidr=...`) must stop synthesis with one line naming the
context key, the bad value and what is allowed, never with a jsii traceback from deep inside a
construct, and never after CloudFormation has started creating resources.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from aws_cdk import aws_rds as rds
from constructs import Node
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rdsmigrate.infra import constants as c


class SettingsError(ValueError):
    """A context value the stack cannot be built from; `str()` is the one line users see."""


class _KeyError(ValueError):
    """A check across several keys, reported under the key the user has to change."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _as_list(value: Any) -> Any:
    """`cdk -c key=value` hands every value over as a string; accept JSON or comma lists."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return value
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


StrList = Annotated[list[str], BeforeValidator(_as_list)]
OptionalStr = Annotated[str | None, BeforeValidator(_blank_is_none)]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_DAILY_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_WEEKLY_WINDOW = re.compile(
    r"^(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)-"
    r"(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):([0-5]\d)$"
)
_SNAPSHOT = re.compile(
    r"^(arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:snapshot:)?(rds:)?[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_ROUTE_TABLE_ID = re.compile(r"^rtb-[0-9a-f]{8,17}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_TRANSIT_GATEWAY_ID = re.compile(r"^tgw-[0-9a-f]{8,17}$")
_DB_INSTANCE_ID = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$"
)


def daily_window_minutes(window: str) -> tuple[int, int]:
    """Start and length in minutes of an RDS backup window `hh24:mi-hh24:mi` (UTC)."""
    match = _DAILY_WINDOW.match(window)
    if not match:
        raise ValueError("allowed: hh24:mi-hh24:mi in UTC, e.g. 08:00-09:00")
    sh, sm, eh, em = (int(g) for g in match.groups())
    start, end = sh * 60 + sm, eh * 60 + em
    return start, (end - start) % _MINUTES_PER_DAY


def weekly_window_minutes(window: str) -> tuple[int, int]:
    """Start (minutes since Monday 00:00 UTC) and length of a `ddd:hh24:mi-ddd:hh24:mi` window."""
    match = _WEEKLY_WINDOW.match(window)
    if not match:
        raise ValueError("allowed: ddd:hh24:mi-ddd:hh24:mi in UTC, e.g. sun:09:30-sun:10:30")
    sd, sh, sm, ed, eh, em = match.groups()
    start = _DAYS.index(sd) * _MINUTES_PER_DAY + int(sh) * 60 + int(sm)
    end = _DAYS.index(ed) * _MINUTES_PER_DAY + int(eh) * 60 + int(em)
    return start, (end - start) % _MINUTES_PER_WEEK


def windows_overlap(backup: str, maintenance: str) -> bool:
    """True when the daily backup window touches the weekly maintenance window on any day.

    Intervals are half-open, so a backup window ending at 09:00 and maintenance starting at
    09:00 do not overlap; both may wrap around midnight (or the end of the week).
    """
    b_start, b_len = daily_window_minutes(backup)
    m_start, m_len = weekly_window_minutes(maintenance)
    for day in range(-1, 8):
        start = day * _MINUTES_PER_DAY + b_start
        for shift in (-_MINUTES_PER_WEEK, 0, _MINUTES_PER_WEEK):
            other = m_start + shift
            if start < other + m_len and other < start + b_len:
                return True
    return False


def _minor_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def _engine_versions() -> dict[str, rds.PostgresEngineVersion]:
    """Full versions aws-cdk-lib knows, from each major's pinned minor upwards ("17.9").

    Older minors of a major are the ones RDS deprecates first (17.1-17.4, 16.1-16.8 can no
    longer be created), so they are refused here rather than by CloudFormation mid-deploy.
    """
    versions: dict[str, rds.PostgresEngineVersion] = {}
    for name in dir(rds.PostgresEngineVersion):
        match = re.fullmatch(r"VER_(\d+)_(\d+)", name)
        if not match or match.group(1) not in c.DEFAULT_MINOR_FOR_MAJOR:
            continue
        version = f"{match.group(1)}.{match.group(2)}"
        if _minor_key(version) >= _minor_key(c.DEFAULT_MINOR_FOR_MAJOR[match.group(1)]):
            versions[version] = getattr(rds.PostgresEngineVersion, name)
    return versions


def _private_network(value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 CIDR block ({exc})") from None
    if not network.is_private:
        raise ValueError("not a private (RFC 1918) range")
    return network


class StagingSettings(BaseModel):
    """Every context key the stack reads, with its default. Field order matters: later
    validators check against earlier fields (subnets against the VPC, maintenance against
    backup)."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, extra="ignore", validate_default=True
    )

    environment_suffix: str = Field(c.DEFAULT_ENVIRONMENT_SUFFIX, alias=c.CTX_ENVIRONMENT_SUFFIX)
    region: str = Field(c.DEFAULT_REGION, alias=c.CTX_REGION)
    account: OptionalStr = Field(None, alias=c.CTX_ACCOUNT)
    staging_vpc_cidr: str = Field(c.DEFAULT_VPC_CIDR, alias=c.CTX_VPC_CIDR)
    app_subnet_cidrs: StrList = Field(
        default_factory=lambda: list(c.DEFAULT_APP_SUBNET_CIDRS), alias=c.CTX_APP_SUBNET_CIDRS
    )
    availability_zones: Annotated[list[str] | None, BeforeValidator(_as_list)] = Field(
        None, alias=c.CTX_AVAILABILITY_ZONES, validate_default=True
    )
    alarm_email: OptionalStr = Field(None, alias=c.CTX_ALARM_EMAIL)
    engine_version: str = Field(c.DEFAULT_ENGINE_VERSION, alias=c.CTX_ENGINE_VERSION)
    instance_class: str = Field(c.DEFAULT_INSTANCE_CLASS, alias=c.CTX_INSTANCE_CLASS)
    backup_window: str = Field(c.DEFAULT_BACKUP_WINDOW, alias=c.CTX_BACKUP_WINDOW)
    maintenance_window: str = Field(c.DEFAULT_MAINTENANCE_WINDOW, alias=c.CTX_MAINTENANCE_WINDOW)
    snapshot_identifier: OptionalStr = Field(None, alias=c.CTX_SNAPSHOT_IDENTIFIER)
    source_vpc_id: OptionalStr = Field(None, alias=c.CTX_SOURCE_VPC_ID)
    source_vpc_cidr: OptionalStr = Field(None, alias=c.CTX_SOURCE_VPC_CIDR)
    source_route_table_ids: Annotated[list[str] | None, BeforeValidator(_as_list)] = Field(
        None, alias=c.CTX_SOURCE_ROUTE_TABLE_IDS
    )
    source_security_group_id: OptionalStr = Field(None, alias=c.CTX_SOURCE_SECURITY_GROUP_ID)
    source_db_instance_id: OptionalStr = Field(None, alias=c.CTX_SOURCE_DB_INSTANCE_ID)
    source_port: int = Field(c.DEFAULT_SOURCE_PORT, alias=c.CTX_SOURCE_PORT, ge=1, le=65535)
    source_account: OptionalStr = Field(None, alias=c.CTX_SOURCE_ACCOUNT)
    source_peer_role_arn: OptionalStr = Field(None, alias=c.CTX_SOURCE_PEER_ROLE_ARN)
    source_transit_gateway_id: OptionalStr = Field(None, alias=c.CTX_SOURCE_TRANSIT_GATEWAY_ID)
    source_secret_arn: OptionalStr = Field(None, alias=c.CTX_SOURCE_SECRET_ARN)

    @field_validator("environment_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        # Goes into export names, alarm names and tags: keep it to what all of them accept.
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", value):
            raise ValueError("allowed: 1-32 lowercase letters, digits and inner hyphens")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", value):
            raise ValueError("allowed: an AWS region name such as us-east-1")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{12}", value):
            raise ValueError("allowed: a 12-digit AWS account id, or leave it unset")
        return value

    @field_validator("staging_vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        network = _private_network(value)
        # AWS accepts /16../28; the three /24 database subnets need at least a /22.
        if not 16 <= network.prefixlen <= 22:
            raise ValueError("allowed: a private IPv4 CIDR block from /16 to /22")
        return value

    @field_validator("app_subnet_cidrs")
    @classmethod
    def _app_subnets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if len(value) != c.AVAILABILITY_ZONE_COUNT:
            raise ValueError(
                f"allowed: exactly {c.AVAILABILITY_ZONE_COUNT} CIDR blocks, one per availability zone"
            )
        vpc_text = info.data.get("staging_vpc_cidr")
        if vpc_text is None:  # the VPC CIDR itself was wrong; that error is reported instead
            return value
        vpc = ipaddress.IPv4Network(vpc_text)
        reserved = database_subnet_cidrs(vpc_text)
        seen: list[ipaddress.IPv4Network] = []
        for text in value:
            subnet = _private_network(text)
            if not subnet.subnet_of(vpc):
                raise ValueError(f"{text} is outside the VPC; allowed: subnets of {vpc_text}")
            if not 16 <= subnet.prefixlen <= 28:
                raise ValueError(f"{text}: allowed prefix lengths are /16 to /28")
            for other in [*seen, *(ipaddress.IPv4Network(r) for r in reserved)]:
                if subnet.overlaps(other):
                    raise ValueError(
                        f"{text} overlaps {other}; allowed: blocks of {vpc_text} that do not "
                        f"overlap each other or the database subnets {', '.join(reserved)}"
                    )
            seen.append(subnet)
        return value

    @field_validator("availability_zones")
    @classmethod
    def _zones(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        region = info.data.get("region", c.DEFAULT_REGION)
        if value is None:
            if info.data.get("account") is not None:
                return None  # env-aware stack: CDK looks the zones up (cached in cdk.context.json)
            if region == c.DEFAULT_REGION:
                return list(c.DEFAULT_AVAILABILITY_ZONES)
            raise ValueError(
                f"required for region {region} when no account is given; allowed: "
                f"{c.AVAILABILITY_ZONE_COUNT} zone names of {region}, e.g. {region}a,{region}b,{region}c"
            )
        if len(value) != c.AVAILABILITY_ZONE_COUNT or len(set(value)) != len(value):
            raise ValueError(
                f"allowed: {c.AVAILABILITY_ZONE_COUNT} distinct zone names of {region}"
            )
        for zone in value:
            if not re.fullmatch(re.escape(region) + r"[a-z]", zone):
                raise ValueError(
                    f"{zone} is not a zone of {region}; allowed: {region}a, {region}b, ..."
                )
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("allowed: one e-mail address, or leave it unset for no subscription")
        return value

    @field_validator("engine_version")
    @classmethod
    def _engine(cls, value: str) -> str:
        value = c.DEFAULT_MINOR_FOR_MAJOR.get(value, value)
        if value not in _engine_versions():
            raise ValueError(
                f"allowed: a PostgreSQL major ({', '.join(c.DEFAULT_MINOR_FOR_MAJOR)}) or one of "
                f"these minors: {', '.join(sorted(_engine_versions(), key=_minor_key))}"
            )
        return value

    @field_validator("instance_class")
    @classmethod
    def _instance_class(cls, value: str) -> str:
        match = re.fullmatch(r"db\.([a-z0-9]+)\.([a-z0-9]+)", value)
        if (
            not match
            or match.group(1) not in c.INSTANCE_FAMILIES
            or (match.group(2) not in c.INSTANCE_SIZES)
        ):
            raise ValueError(
                f"allowed: db.<family>.<size> with family one of {', '.join(c.INSTANCE_FAMILIES)}"
            )
        if f"{match.group(1)}.{match.group(2)}" in c.NO_PERFORMANCE_INSIGHTS:
            raise ValueError(
                "Performance Insights (required here) is not offered on this class; allowed: "
                "db.t3.medium, db.t4g.medium or larger"
            )
        return value

    @field_validator("backup_window")
    @classmethod
    def _backup_window(cls, value: str) -> str:
        _, length = daily_window_minutes(value)
        if length < c.MIN_WINDOW_MINUTES:
            raise ValueError(
                f"window shorter than {c.MIN_WINDOW_MINUTES} minutes; allowed: at least 30"
            )
        return value

    @field_validator("maintenance_window")
    @classmethod
    def _maintenance_window(cls, value: str, info: ValidationInfo) -> str:
        _, length = weekly_window_minutes(value)
        if length < c.MIN_WINDOW_MINUTES:
            raise ValueError(
                f"window shorter than {c.MIN_WINDOW_MINUTES} minutes; allowed: at least 30"
            )
        backup = info.data.get("backup_window")
        if backup is not None and windows_overlap(backup, value):
            raise ValueError(
                f"overlaps the backup window {backup} (RDS rejects that); allowed: a UTC window "
                "outside the daily backup window"
            )
        return value

    @field_validator("snapshot_identifier")
    @classmethod
    def _snapshot(cls, value: str | None) -> str | None:
        if value is not None and not _SNAPSHOT.match(value):
            raise ValueError("allowed: a DB snapshot identifier or snapshot ARN, or leave it unset")
        return value

    @field_validator("source_vpc_id")
    @classmethod
    def _source_vpc(cls, value: str | None) -> str | None:
        return _matching(value, _VPC_ID, "a VPC id such as vpc-0123456789abcdef0")

    @field_validator("source_vpc_cidr")
    @classmethod
    def _source_cidr(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 CIDR block ({exc})") from None
        if not 16 <= network.prefixlen <= 28:
            raise ValueError("allowed: the source VPC's IPv4 CIDR block, /16 to /28")
        staging = info.data.get("staging_vpc_cidr")
        if staging is not None and network.overlaps(ipaddress.IPv4Network(staging)):
            raise ValueError(
                f"overlaps the staging VPC {staging}, so no route can tell them apart; allowed: "
                f"a source CIDR outside {staging}, or pick another stagingVpcCidr"
            )
        return value

    @field_validator("source_route_table_ids")
    @classmethod
    def _source_route_tables(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or len(set(value)) != len(value):
            raise ValueError("allowed: one or more distinct route table ids, comma-separated")
        for table in value:
            _matching(table, _ROUTE_TABLE_ID, "route table ids such as rtb-0123456789abcdef0")
        return value

    @field_validator("source_security_group_id")
    @classmethod
    def _source_sg(cls, value: str | None) -> str | None:
        return _matching(
            value, _SECURITY_GROUP_ID, "a security group id such as sg-0123456789abcdef0"
        )

    @field_validator("source_db_instance_id")
    @classmethod
    def _source_instance(cls, value: str | None) -> str | None:
        return _matching(
            value, _DB_INSTANCE_ID, "an RDS DB instance identifier such as dev-paymentdb"
        )

    @field_validator("source_account")
    @classmethod
    def _source_account(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"\d{12}", value):
            raise ValueError("allowed: the 12-digit id of the source's AWS account")
        if value == info.data.get("account"):
            raise ValueError(
                "is this stack's own account; allowed: leave sourceAccount unset for a source "
                "in the same account"
            )
        return value

    @field_validator("source_peer_role_arn")
    @classmethod
    def _peer_role(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        match = _ROLE_ARN.match(value)
        if not match:
            raise ValueError("allowed: an IAM role ARN such as arn:aws:iam::210987654321:role/peer")
        account = info.data.get("source_account")
        if account is None:
            raise ValueError(
                "needs sourceAccount, the account the role is in; allowed: set sourceAccount, "
                "or drop sourcePeerRoleArn for a same-account source"
            )
        if match.group(1) != account:
            raise ValueError(
                f"is a role of account {match.group(1)}, not of sourceAccount {account}; "
                "allowed: the peer-acceptance role in the source's account"
            )
        return value

    @field_validator("source_transit_gateway_id")
    @classmethod
    def _transit_gateway(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        _matching(value, _TRANSIT_GATEWAY_ID, "a transit gateway id such as tgw-0123456789abcdef0")
        if info.data.get("source_peer_role_arn") is not None:
            raise ValueError(
                "a transit gateway replaces the peering that sourcePeerRoleArn would accept; "
                "allowed: either sourceTransitGatewayId or sourceAccount + sourcePeerRoleArn"
            )
        return value

    @field_validator("source_secret_arn")
    @classmethod
    def _source_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        match = _SECRET_ARN.match(value)
        if not match:
            raise ValueError(
                "allowed: the full ARN of a Secrets Manager secret (its name, a hyphen and the six "
                "characters Secrets Manager appends)"
            )
        region = info.data.get("region")
        if region is not None and match.group(1) != region:
            raise ValueError(
                f"is in {match.group(1)}, but the runner reaches Secrets Manager only through "
                f"its endpoint in {region}; allowed: a secret in {region} (replicate it there)"
            )
        return value

    @model_validator(mode="after")
    def _source_all_or_nothing(self) -> StagingSettings:
        given = [
            key
            for key, name in _SOURCE_FIELDS.items()
            if name in self.model_fields_set and getattr(self, name) is not None
        ]
        if not given:
            return self
        if self.source_account is not None and not (
            self.source_peer_role_arn or self.source_transit_gateway_id
        ):
            raise _KeyError(
                c.CTX_SOURCE_PEER_ROLE_ARN,
                "required with sourceAccount (a role there that accepts the peering); "
                "allowed: its ARN, or sourceTransitGatewayId for a shared transit gateway",
            )
        for key in _SOURCE_REQUIRED:
            if getattr(self, _SOURCE_FIELDS[key]) is None:
                raise _KeyError(
                    key,
                    f"required with {given[0]}: the source network is all-or-nothing; "
                    f"allowed: set {', '.join(_SOURCE_REQUIRED)} together, or no source key",
                )
        return self

    @property
    def source(self) -> SourceNetwork | None:
        """The development network, or None when no source context is given."""
        if self.source_vpc_id is None:
            return None
        assert self.source_vpc_cidr and self.source_route_table_ids
        assert self.source_security_group_id and self.source_db_instance_id
        return SourceNetwork(
            vpc_id=self.source_vpc_id,
            vpc_cidr=self.source_vpc_cidr,
            route_table_ids=tuple(self.source_route_table_ids),
            security_group_id=self.source_security_group_id,
            db_instance_id=self.source_db_instance_id,
            port=self.source_port,
            account=self.source_account,
            peer_role_arn=self.source_peer_role_arn,
            transit_gateway_id=self.source_transit_gateway_id,
            secret_arn=self.source_secret_arn,
        )

    @property
    def engine_major(self) -> str:
        return self.engine_version.split(".")[0]

    @property
    def engine(self) -> rds.PostgresEngineVersion:
        return _engine_versions()[self.engine_version]

    @property
    def instance_type_name(self) -> str:
        """The EC2-style name CDK wants (`t3.medium`); CDK adds the `db.` prefix itself."""
        return self.instance_class.removeprefix("db.")

    @property
    def connections_alarm_threshold(self) -> int:
        return int(c.MAX_CONNECTIONS * c.CONNECTIONS_ALARM_RATIO)

    @classmethod
    def from_context(cls, node: Node) -> StagingSettings:
        """Read every key from the construct tree's context (cdk.json, `-c`, App(context=))."""
        unknown = unknown_key_error(list(node.get_all_context()))
        if unknown is not None:
            raise SettingsError(unknown)
        raw = {}
        for field in cls.model_fields.values():
            assert field.alias is not None
            value = node.try_get_context(field.alias)
            if value is not None:
                raw[field.alias] = value
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> StagingSettings:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc, raw)) from None


@dataclass(frozen=True)
class SourceNetwork:
    """The development side, as validated: what the stack connects the staging VPC to."""

    vpc_id: str
    vpc_cidr: str
    route_table_ids: tuple[str, ...]
    security_group_id: str
    db_instance_id: str
    port: int
    account: str | None
    peer_role_arn: str | None
    transit_gateway_id: str | None
    secret_arn: str | None

    @property
    def same_account(self) -> bool:
        """Only then can this stack write the source's route tables and security group."""
        return self.account is None


_SOURCE_FIELDS = {
    field.alias: name
    for name, field in StagingSettings.model_fields.items()
    if field.alias and field.alias.startswith("source")
}
_SOURCE_REQUIRED = (
    c.CTX_SOURCE_VPC_ID,
    c.CTX_SOURCE_VPC_CIDR,
    c.CTX_SOURCE_ROUTE_TABLE_IDS,
    c.CTX_SOURCE_SECURITY_GROUP_ID,
    c.CTX_SOURCE_DB_INSTANCE_ID,
)


def _matching(value: str | None, pattern: re.Pattern[str], allowed: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"allowed: {allowed}")
    return value


def unknown_key_error(keys: list[str]) -> str | None:
    """The one line for a context key that looks like one of ours but is not (a typo).

    CDK itself puts keys such as `@aws-cdk/...` feature flags, `aws:cdk:...` and lookup
    results (`availability-zones:account=...`) into the context; those never look like ours.
    """
    known = [f.alias for f in StagingSettings.model_fields.values() if f.alias]
    by_lower = {k.lower(): k for k in known}
    for key in keys:
        if key in known or any(ch in key for ch in ":@/"):
            continue
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.8)
        if close or key.lower().startswith(c.OWN_CONTEXT_PREFIXES):
            hint = (
                f"did you mean {by_lower[close[0]]}?"
                if close
                else f"allowed keys: {', '.join(k for k in known if k.startswith(('source', 'staging')))}"
            )
            return f"unknown context key {key}: this stack does not read it; {hint}"
    return None


def database_subnet_cidrs(vpc_cidr: str) -> list[str]:
    """The /24s CDK's `Vpc` allocates first, in order, to the database subnet group."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    subnets = vpc.subnets(new_prefix=24)
    return [str(next(subnets)) for _ in range(c.AVAILABILITY_ZONE_COUNT)]


def _one_line(exc: ValidationError, raw: dict[str, Any]) -> str:
    error = exc.errors(include_url=False)[0]
    aliases = {name: field.alias for name, field in StagingSettings.model_fields.items()}
    key = str(error["loc"][0]) if error["loc"] else "context"
    cause = error.get("ctx", {}).get("error")
    key = aliases.get(key) or key  # defaults are reported under the Python field name
    value = raw.get(key, error.get("input"))
    if isinstance(cause, _KeyError):
        key, value = cause.key, raw.get(cause.key)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"invalid context value {key}={json.dumps(value)}: {message}".replace("\n", " ")
