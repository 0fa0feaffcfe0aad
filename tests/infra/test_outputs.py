"""Issue point 10: the original outputs plus the alarm topic, exported with the suffix."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

NAMES = [
    "DatabaseEndpoint",
    "DatabasePort",
    "DatabaseName",
    "DatabaseSecretArn",
    "DatabaseSecurityGroupId",
    "VpcId",
    "AlarmTopicArn",
]
# Read by `rdsmigrate aws run` (notes/interfaces.md).
RUNNER_NAMES = [
    "RunnerClusterArn",
    "RunnerTaskDefinitionArn",
    "RunnerContainerName",
    "RunnerSubnetIds",
    "RunnerSecurityGroupId",
    "RunnerLogGroupName",
]


def test_outputs_exported_with_the_default_suffix(default_stack: Synthesized) -> None:
    outputs = default_stack.json["Outputs"]
    assert sorted(outputs) == sorted(NAMES + RUNNER_NAMES)
    for name in NAMES + RUNNER_NAMES:
        assert outputs[name]["Export"] == {"Name": f"{name}-staging-001"}
    assert outputs["DatabaseName"]["Value"] == "paymentdb"


def test_export_names_follow_the_suffix_and_are_unique(env_stack: Synthesized) -> None:
    exports = [o["Export"]["Name"] for o in env_stack.json["Outputs"].values()]
    names = [*NAMES, *RUNNER_NAMES, "PeeringConnectionId"]
    assert sorted(exports) == sorted(f"{name}-qa-7" for name in names)
    assert len(set(exports)) == len(exports)


def test_alarm_names_and_tags_carry_the_suffix(env_stack: Synthesized) -> None:
    for alarm in env_stack.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmName"].endswith("-qa-7")
    env_stack.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Tags": [
                {"Key": "CostCenter", "Value": "engineering"},
                {"Key": "Environment", "Value": "staging"},
                {"Key": "EnvironmentSuffix", "Value": "qa-7"},
                {"Key": "ManagedBy", "Value": "CDK"},
            ]
        },
    )


def test_runner_outputs_name_what_aws_run_starts(default_stack: Synthesized) -> None:
    outputs = {k: v["Value"] for k, v in default_stack.json["Outputs"].items()}
    cluster, _ = default_stack.one("AWS::ECS::Cluster")
    task, _ = default_stack.one("AWS::ECS::TaskDefinition")
    assert outputs["RunnerClusterArn"] == {"Fn::GetAtt": [cluster, "Arn"]}
    assert outputs["RunnerTaskDefinitionArn"] == {"Ref": task}
    assert outputs["RunnerContainerName"] == "rdsmigrate"
    subnets = sorted(
        k for k in default_stack.resources("AWS::EC2::Subnet") if "DatabaseSubnet" in k
    )
    assert outputs["RunnerSubnetIds"] == {"Fn::Join": [",", [{"Ref": s} for s in subnets]]}
    group = outputs["RunnerSecurityGroupId"]["Fn::GetAtt"][0]
    assert group.startswith("RunnerSecurityGroup")
    log_group = outputs["RunnerLogGroupName"]["Ref"]
    assert log_group.startswith("RunnerLogGroup")


def test_the_link_is_an_output_only_with_a_source(
    default_stack: Synthesized, peering_stack: Synthesized, snapshot_stack: Synthesized
) -> None:
    assert "PeeringConnectionId" not in default_stack.json["Outputs"]
    peering, _ = peering_stack.one("AWS::EC2::VPCPeeringConnection")
    assert peering_stack.json["Outputs"]["PeeringConnectionId"]["Value"] == {"Ref": peering}
    attachment, _ = snapshot_stack.one("AWS::EC2::TransitGatewayVpcAttachment")
    assert snapshot_stack.json["Outputs"]["TransitGatewayAttachmentId"]["Value"] == {
        "Ref": attachment
    }
