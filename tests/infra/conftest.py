"""Synthesized staging stacks, one per distinct configuration, shared by every infra test.

Synthesis (with the four cdk-nag packs as validation plugins) takes several seconds, so each
configuration is synthesized once per session, and every infra test module sits in one xdist
group so that a single worker pays for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before aws_cdk starts the jsii runtime: keep its Node end-of-life banner out of test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from rdsmigrate.infra.constants import STACK_ID
from rdsmigrate.infra.stack import RdsMigrationStack, build

REPO = Path(__file__).resolve().parents[2]

# The development network (issue 11), as `cdk -c key=value` delivers it: strings only.
SOURCE_CONTEXT = {
    "sourceVpcId": "vpc-0a1b2c3d4e5f60718",
    "sourceVpcCidr": "10.20.0.0/16",
    "sourceRouteTableIds": "rtb-0a1b2c3d4e5f60711,rtb-0a1b2c3d4e5f60722",
    "sourceSecurityGroupId": "sg-0a1b2c3d4e5f60733",
    "sourceDbInstanceId": "dev-paymentdb",
}
SOURCE_ACCOUNT = "210987654321"
TRANSIT_GATEWAY = "tgw-0a1b2c3d4e5f60744"

# Same-account peering, on a non-default port, with the source's credentials secret.
PEERING_CONTEXT = {
    **SOURCE_CONTEXT,
    "sourcePort": "6432",
    "sourceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dev/paymentdb-AbC123",
}
# Restored from a snapshot, the source reached through an existing transit gateway.
SNAPSHOT_CONTEXT = {
    "snapshotIdentifier": "dev-paymentdb-final-encrypted",
    **SOURCE_CONTEXT,
    "sourceTransitGatewayId": TRANSIT_GATEWAY,
}
# Another account and region; the source in a third account, peered with its role.
ENV_CONTEXT = {
    "account": "123456789012",
    "region": "eu-west-1",
    "engineVersion": "16",
    "instanceClass": "db.r6g.large",
    "alarmEmail": "dba-oncall@example.com",
    "environmentSuffix": "qa-7",
    **SOURCE_CONTEXT,
    "sourceAccount": SOURCE_ACCOUNT,
    "sourcePeerRoleArn": f"arn:aws:iam::{SOURCE_ACCOUNT}:role/staging-peering-acceptor",
    "sourceSecretArn": f"arn:aws:secretsmanager:eu-west-1:{SOURCE_ACCOUNT}:secret:dev-AbC123",
}


@dataclass(frozen=True)
class Synthesized:
    stack: RdsMigrationStack
    template: assertions.Template
    json: dict[str, Any]
    validation_report: dict[str, Any]
    template_path: Path

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.items()))


def synthesize(context: dict[str, Any], outdir: Path) -> Synthesized:
    app = cdk.App(context=context, outdir=str(outdir))
    stack = build(app)
    assembly = app.synth()
    template_json = assembly.get_stack_by_name(STACK_ID).template
    return Synthesized(
        stack=stack,
        template=assertions.Template.from_json(template_json),
        json=template_json,
        validation_report=json.loads((outdir / "validation-report.json").read_text()),
        template_path=outdir / f"{STACK_ID}.template.json",
    )


@pytest.fixture(scope="session")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize({}, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def snapshot_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(SNAPSHOT_CONTEXT, tmp_path_factory.mktemp("snapshot"))


@pytest.fixture(scope="session")
def env_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(ENV_CONTEXT, tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="session")
def peering_stack(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(PEERING_CONTEXT, tmp_path_factory.mktemp("peering"))


# default: no source; peering: same account; snapshot: transit gateway; env: cross-account.
STACKS = ["default", "peering", "snapshot", "env"]


@pytest.fixture(scope="session", params=STACKS)
def any_stack(request: pytest.FixtureRequest) -> Iterator[Synthesized]:
    yield request.getfixturevalue(f"{request.param}_stack")


def clean_env() -> dict[str, str]:
    """The environment of a machine with no AWS credentials and no notices/version checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_VERSION_CHECK="1",
    )
    env.pop("CDK_CONTEXT_JSON", None)
    return env
