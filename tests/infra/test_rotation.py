"""Issue point 5: a 30-day rotation that can run from the isolated subnets."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")


def _logical_id(stack: Synthesized, type_: str, prefix: str) -> str:
    matches = [k for k in stack.resources(type_) if k.startswith(prefix)]
    assert len(matches) == 1, matches
    return matches[0]


def test_schedule_every_30_days_on_the_target_attachment(any_stack: Synthesized) -> None:
    attachment, _ = any_stack.one("AWS::SecretsManager::SecretTargetAttachment")
    _, schedule = any_stack.one("AWS::SecretsManager::RotationSchedule")
    props = schedule["Properties"]
    assert props["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    # Ref to the attachment: CloudFormation creates the schedule only once the secret holds
    # the instance's host and port, which the first rotation connects to.
    assert props["SecretId"] == {"Ref": attachment}


def test_hosted_function_runs_in_the_database_subnets_with_the_secret_key(
    default_stack: Synthesized,
) -> None:
    _, schedule = default_stack.one("AWS::SecretsManager::RotationSchedule")
    hosted = schedule["Properties"]["HostedRotationLambda"]
    assert hosted["RotationType"] == "PostgreSQLSingleUser"
    database_subnets = sorted(
        k for k in default_stack.resources("AWS::EC2::Subnet") if "DatabaseSubnet" in k
    )
    assert len(database_subnets) == 3
    subnet_refs = sorted(
        part["Ref"] for part in hosted["VpcSubnetIds"]["Fn::Join"][1] if isinstance(part, dict)
    )
    assert subnet_refs == database_subnets
    key = _logical_id(default_stack, "AWS::KMS::Key", "EncryptionKey")
    assert hosted["KmsKeyArn"] == {"Fn::GetAtt": [key, "Arn"]}
    rotation_sg = _logical_id(default_stack, "AWS::EC2::SecurityGroup", "RotationSecurityGroup")
    assert hosted["VpcSecurityGroupIds"] == {"Fn::GetAtt": [rotation_sg, "GroupId"]}


def test_rotation_security_group_reaches_postgres_and_the_endpoint(
    default_stack: Synthesized,
) -> None:
    rotation_sg = _logical_id(default_stack, "AWS::EC2::SecurityGroup", "RotationSecurityGroup")
    db_sg = _logical_id(default_stack, "AWS::EC2::SecurityGroup", "DatabaseSecurityGroup")
    endpoint_sg = _logical_id(
        default_stack, "AWS::EC2::SecurityGroup", "NetworkVpcSecretsManagerEndpointSecurityGroup"
    )
    default_stack.template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "GroupId": {"Fn::GetAtt": [db_sg, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [rotation_sg, "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
        },
    )
    egress = [
        r["Properties"]
        for r in default_stack.resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [rotation_sg, "GroupId"]}
    ]
    egress += default_stack.json["Resources"][rotation_sg]["Properties"].get(
        "SecurityGroupEgress", []
    )
    reached = {
        (r["DestinationSecurityGroupId"]["Fn::GetAtt"][0], r["FromPort"], r["ToPort"])
        for r in egress
    }
    assert reached == {(db_sg, 5432, 5432), (endpoint_sg, 443, 443)}


def test_secrets_manager_is_reachable_through_a_private_endpoint(
    default_stack: Synthesized,
) -> None:
    default_stack.template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "ServiceName": "com.amazonaws.us-east-1.secretsmanager",
            "VpcEndpointType": "Interface",
            "PrivateDnsEnabled": True,
            "SubnetIds": Match.array_with([{"Ref": Match.string_like_regexp("DatabaseSubnet1")}]),
        },
    )


def test_secret_is_encrypted_with_the_stack_key(any_stack: Synthesized) -> None:
    key = _logical_id(any_stack, "AWS::KMS::Key", "EncryptionKey")
    any_stack.template.has_resource_properties(
        "AWS::SecretsManager::Secret", {"KmsKeyId": {"Fn::GetAtt": [key, "Arn"]}}
    )
