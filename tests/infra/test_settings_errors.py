"""Configuration errors: one line naming the context key, the bad value and what is allowed."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rdsmigrate.infra.settings import (
    SettingsError,
    StagingSettings,
    unknown_key_error,
    windows_overlap,
)
from tests.infra.conftest import REPO, clean_env

pytestmark = pytest.mark.xdist_group("infra")

_SOURCE = {
    "sourceVpcId": "vpc-0a1b2c3d4e5f60718",
    "sourceVpcCidr": "10.20.0.0/16",
    "sourceRouteTableIds": "rtb-0a1b2c3d4e5f60711",
    "sourceSecurityGroupId": "sg-0a1b2c3d4e5f60733",
    "sourceDbInstanceId": "dev-paymentdb",
}
_NO_TABLES = {k: v for k, v in _SOURCE.items() if k != "sourceRouteTableIds"}
_APP_20 = "10.20.10.0/24,10.20.11.0/24,10.20.12.0/24"
_ROLE = "arn:aws:iam::210987654321:role/peer"
_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dev-AbC123"

CASES = [
    # (context, key, bad value as printed, a fragment of "what is allowed")
    ({"stagingVpcCidr": "10.1.0.0/33"}, "stagingVpcCidr", '"10.1.0.0/33"', "not an IPv4 CIDR"),
    ({"stagingVpcCidr": "10.1.0.1/16"}, "stagingVpcCidr", '"10.1.0.1/16"', "not an IPv4 CIDR"),
    ({"stagingVpcCidr": "8.8.0.0/16"}, "stagingVpcCidr", '"8.8.0.0/16"', "private"),
    ({"stagingVpcCidr": "10.0.0.0/8"}, "stagingVpcCidr", '"10.0.0.0/8"', "/16 to /22"),
    (
        {"appSubnetCidrs": ["10.2.10.0/24", "10.1.11.0/24", "10.1.12.0/24"]},
        "appSubnetCidrs",
        '["10.2.10.0/24", "10.1.11.0/24", "10.1.12.0/24"]',
        "outside the VPC; allowed: subnets of 10.1.0.0/16",
    ),
    (
        {"appSubnetCidrs": "10.1.1.0/24,10.1.11.0/24,10.1.12.0/24"},
        "appSubnetCidrs",
        '"10.1.1.0/24,10.1.11.0/24,10.1.12.0/24"',
        "overlaps 10.1.1.0/24",
    ),
    (
        {"appSubnetCidrs": ["10.1.10.0/24", "10.1.10.128/25", "10.1.12.0/24"]},
        "appSubnetCidrs",
        '["10.1.10.0/24", "10.1.10.128/25", "10.1.12.0/24"]',
        "overlaps 10.1.10.0/24",
    ),
    ({"appSubnetCidrs": ["10.1.10.0/24"]}, "appSubnetCidrs", '["10.1.10.0/24"]', "exactly 3"),
    (
        {"maintenanceWindow": "sun:08:30-sun:09:30"},
        "maintenanceWindow",
        '"sun:08:30-sun:09:30"',
        "overlaps the backup window 08:00-09:00",
    ),
    (
        {"backupWindow": "23:30-00:30", "maintenanceWindow": "mon:00:00-mon:01:00"},
        "maintenanceWindow",
        '"mon:00:00-mon:01:00"',
        "overlaps the backup window 23:30-00:30",
    ),
    ({"backupWindow": "08:00-08:20"}, "backupWindow", '"08:00-08:20"', "at least 30"),
    (
        {"maintenanceWindow": "sun:11:00-sun:11:29"},
        "maintenanceWindow",
        '"sun:11:00-sun:11:29"',
        "at least 30",
    ),
    ({"backupWindow": "3am-5am"}, "backupWindow", '"3am-5am"', "hh24:mi-hh24:mi in UTC"),
    (
        {"maintenanceWindow": "sunday:03:00-sunday:05:00"},
        "maintenanceWindow",
        '"sunday:03:00-sunday:05:00"',
        "ddd:hh24:mi-ddd:hh24:mi",
    ),
    ({"engineVersion": "13.7"}, "engineVersion", '"13.7"', "14, 15, 16, 17, 18"),
    ({"engineVersion": "17.99"}, "engineVersion", '"17.99"', "these minors: 14.22,"),
    ({"engineVersion": "16.6"}, "engineVersion", '"16.6"', "16.13"),  # RDS deprecated 16.1-16.8
    ({"instanceClass": "db.t9.huge"}, "instanceClass", '"db.t9.huge"', "db.<family>.<size>"),
    ({"instanceClass": "t3.medium"}, "instanceClass", '"t3.medium"', "db.<family>.<size>"),
    ({"instanceClass": "db.t3.micro"}, "instanceClass", '"db.t3.micro"', "Performance Insights"),
    (
        {"region": "eu-west-1"},
        "availabilityZones",
        "null",
        "required for region eu-west-1 when no account is given",
    ),
    (
        {"availabilityZones": ["us-east-1a", "us-east-1b"]},
        "availabilityZones",
        '["us-east-1a", "us-east-1b"]',
        "3 distinct zone names",
    ),
    (
        {"availabilityZones": "us-east-1a,us-east-1b,eu-west-1c"},
        "availabilityZones",
        '"us-east-1a,us-east-1b,eu-west-1c"',
        "eu-west-1c is not a zone of us-east-1",
    ),
    ({"environmentSuffix": "Staging_001"}, "environmentSuffix", '"Staging_001"', "lowercase"),
    ({"alarmEmail": "not-an-address"}, "alarmEmail", '"not-an-address"', "one e-mail address"),
    ({"account": "1234"}, "account", '"1234"', "12-digit"),
    ({"snapshotIdentifier": "dev--snap"}, "snapshotIdentifier", '"dev--snap"', "snapshot"),
    # The source network (issue 11): all-or-nothing, not overlapping, compatible.
    ({"sourceVpcId": "vpc-0a1b2c3d4e5f60718"}, "sourceVpcCidr", "null", "all-or-nothing"),
    ({**_NO_TABLES}, "sourceRouteTableIds", "null", "required with sourceVpcId"),
    ({"sourcePort": "6432"}, "sourceVpcId", "null", "required with sourcePort"),
    ({**_SOURCE, "sourceVpcId": "vpc-1"}, "sourceVpcId", '"vpc-1"', "vpc-0123456789abcdef0"),
    (
        {**_SOURCE, "sourceVpcCidr": "10.1.128.0/20"},
        "sourceVpcCidr",
        '"10.1.128.0/20"',
        "overlaps the staging VPC 10.1.0.0/16",
    ),
    (
        {**_SOURCE, "stagingVpcCidr": "10.20.0.0/16", "appSubnetCidrs": _APP_20},
        "sourceVpcCidr",
        '"10.20.0.0/16"',
        "overlaps the staging VPC 10.20.0.0/16",
    ),
    ({**_SOURCE, "sourceVpcCidr": "10.20.0.0/33"}, "sourceVpcCidr", '"10.20.0.0/33"', "CIDR"),
    (
        {**_SOURCE, "sourceRouteTableIds": "rtb-0a1b2c3d4e5f60711,subnet-1"},
        "sourceRouteTableIds",
        '"rtb-0a1b2c3d4e5f60711,subnet-1"',
        "rtb-0123456789abcdef0",
    ),
    ({**_SOURCE, "sourceSecurityGroupId": "sg-x"}, "sourceSecurityGroupId", '"sg-x"', "sg-0123"),
    ({**_SOURCE, "sourceDbInstanceId": "dev--db"}, "sourceDbInstanceId", '"dev--db"', "RDS DB"),
    ({**_SOURCE, "sourcePort": "0"}, "sourcePort", '"0"', "greater than or equal to 1"),
    (
        {**_SOURCE, "sourceAccount": "210987654321"},
        "sourcePeerRoleArn",
        "null",
        "required with sourceAccount",
    ),
    (
        {**_SOURCE, "sourcePeerRoleArn": _ROLE},
        "sourcePeerRoleArn",
        json.dumps(_ROLE),
        "needs sourceAccount",
    ),
    (
        {**_SOURCE, "sourceAccount": "111111111111", "sourcePeerRoleArn": _ROLE},
        "sourcePeerRoleArn",
        json.dumps(_ROLE),
        "not of sourceAccount 111111111111",
    ),
    (
        {**_SOURCE, "account": "123456789012", "sourceAccount": "123456789012"},
        "sourceAccount",
        '"123456789012"',
        "leave sourceAccount unset",
    ),
    (
        {
            **_SOURCE,
            "sourceAccount": "210987654321",
            "sourcePeerRoleArn": _ROLE,
            "sourceTransitGatewayId": "tgw-0a1b2c3d4e5f60744",
        },
        "sourceTransitGatewayId",
        '"tgw-0a1b2c3d4e5f60744"',
        "either sourceTransitGatewayId or sourceAccount + sourcePeerRoleArn",
    ),
    (
        {**_SOURCE, "sourceSecretArn": _SECRET.replace("us-east-1", "eu-west-1")},
        "sourceSecretArn",
        json.dumps(_SECRET.replace("us-east-1", "eu-west-1")),
        "a secret in us-east-1",
    ),
    ({**_SOURCE, "sourceSecretArn": "dev/paymentdb"}, "sourceSecretArn", '"dev/paymentdb"', "ARN"),
]


@pytest.mark.parametrize(
    ("context", "key", "shown", "allowed"),
    CASES,
    ids=[c[1] + ":" + str(c[0].get(c[1], "unset")) for c in CASES],
)
def test_bad_context_value_is_one_line_naming_key_value_and_allowed(
    context: dict[str, object], key: str, shown: str, allowed: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        StagingSettings.parse(context)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid context value {key}={shown}: "), message
    assert allowed in message


def test_defaults_are_valid_and_resolve_the_major_to_a_creatable_minor() -> None:
    settings = StagingSettings.parse({})
    assert settings.engine_version == "17.9"
    assert settings.engine_major == "17"
    assert settings.availability_zones == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert not windows_overlap(settings.backup_window, settings.maintenance_window)


def test_cli_strings_are_accepted_for_list_keys() -> None:
    """`cdk -c appSubnetCidrs=...` delivers a string; comma lists and JSON arrays both work."""
    comma = StagingSettings.parse({"appSubnetCidrs": "10.1.20.0/24, 10.1.21.0/24,10.1.22.0/24"})
    as_json = StagingSettings.parse(
        {"appSubnetCidrs": '["10.1.20.0/24","10.1.21.0/24","10.1.22.0/24"]'}
    )
    assert (
        comma.app_subnet_cidrs
        == as_json.app_subnet_cidrs
        == [
            "10.1.20.0/24",
            "10.1.21.0/24",
            "10.1.22.0/24",
        ]
    )


@pytest.mark.parametrize(
    ("backup", "maintenance", "overlap"),
    [
        ("08:00-09:00", "sun:09:30-sun:10:30", False),
        ("08:00-09:00", "sun:09:00-sun:10:00", False),  # touching is not overlapping
        ("08:00-09:00", "wed:08:59-wed:09:30", True),
        ("23:00-01:00", "sun:00:30-sun:01:30", True),  # backup wraps midnight
        ("02:00-03:00", "sun:23:30-mon:02:30", True),  # maintenance wraps into Monday
        ("02:00-03:00", "sat:23:30-sun:01:30", False),
    ],
)
def test_window_overlap_rule(backup: str, maintenance: str, overlap: bool) -> None:
    assert windows_overlap(backup, maintenance) is overlap


@pytest.mark.xdist_group("infra-cli")
def test_app_py_prints_one_line_and_exits_non_zero_on_bad_context() -> None:
    env = clean_env()
    env["CDK_CONTEXT_JSON"] = '{"stagingVpcCidr": "10.1.0.0/33"}'  # what `cdk -c` passes on
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        'error: invalid context value stagingVpcCidr="10.1.0.0/33": not an IPv4 CIDR block '
        "('33' is not a valid netmask)"
    ]


def test_a_complete_source_context_parses_and_without_one_there_is_none() -> None:
    assert StagingSettings.parse({}).source is None
    source = StagingSettings.parse(
        {**_SOURCE, "sourceRouteTableIds": "rtb-0a1b2c3d4e5f60711, rtb-0a1b2c3d4e5f60722"}
    ).source
    assert source is not None
    assert source.route_table_ids == ("rtb-0a1b2c3d4e5f60711", "rtb-0a1b2c3d4e5f60722")
    assert source.port == 5432 and source.same_account
    assert StagingSettings.parse(
        {
            **_SOURCE,
            "sourceAccount": "210987654321",
            "sourceTransitGatewayId": "tgw-0a1b2c3d4e5f60744",
        }
    ).source


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("sourceVpcID", "did you mean sourceVpcId?"),
        ("sourcevpccidr", "did you mean sourceVpcCidr?"),
        ("stagingVpcCIDR", "did you mean stagingVpcCidr?"),
        ("alarmEmial", "did you mean alarmEmail?"),
        ("sourceSubnetIds", "allowed keys: stagingVpcCidr, sourceVpcId,"),
        ("stagingFoo", "allowed keys: stagingVpcCidr, sourceVpcId,"),
    ],
)
def test_a_key_that_looks_like_ours_is_refused_naming_the_close_match(key: str, hint: str) -> None:
    message = unknown_key_error([key])
    assert message is not None and message.startswith(f"unknown context key {key}: ")
    assert hint in message


def test_cdk_own_context_keys_are_not_ours_to_refuse() -> None:
    assert (
        unknown_key_error(
            [
                "@aws-cdk/core:newStyleStackSynthesis",
                "aws:cdk:enable-path-metadata",
                "acknowledged-issue-numbers",
                "availability-zones:account=1:region=x",
            ]
        )
        is None
    )


@pytest.mark.xdist_group("infra-cli")
def test_app_py_refuses_a_misspelt_source_key_in_one_line() -> None:
    env = clean_env()
    env["CDK_CONTEXT_JSON"] = json.dumps({**_SOURCE, "sourceVpcID": "vpc-0a1b2c3d4e5f60718"})
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown context key sourceVpcID: this stack does not read it; "
        "did you mean sourceVpcId?"
    ]


def _runbook_context(text: str, start: str) -> dict[str, str]:
    section = text[text.index("### Runbook: development to staging") :]
    section = section[section.index(start) :]
    pairs = re.findall(r"-c (\w+)=([^\s`]+)", section[: section.index("\n\n")])
    return {k: v for k, v in pairs if "..." not in v}  # `tgw-...` stands for "yours"


def test_the_runbook_deploy_commands_are_valid_context() -> None:
    """What the README tells users to paste parses: same account, then another account."""
    text = (REPO / "README.md").read_text()
    same = _runbook_context(text, "npx cdk deploy")
    assert {"sourceVpcId", "sourceSecretArn"} <= set(same)
    assert unknown_key_error(list(same)) is None
    settings = StagingSettings.parse(same)
    assert settings.source is not None and settings.source.same_account
    other = {**same, **_runbook_context(text, "Another account: add")}
    source = StagingSettings.parse(other).source
    assert source is not None and source.peer_role_arn is not None
    removed = _runbook_context(
        text, "npx cdk deploy -c account=123456789012 -c alarmEmail=dba-oncall@example.com\n"
    )
    assert not [k for k in removed if k.startswith("source")]
