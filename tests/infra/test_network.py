"""Issue points 7 and 8: isolated VPC, flow logs, closed default SG, subnets and AZs from context."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")


def _subnets(stack: Synthesized, kind: str) -> dict[str, str]:
    """CIDR -> AZ of the subnets whose logical id names `kind`."""
    return {
        s["Properties"]["CidrBlock"]: s["Properties"]["AvailabilityZone"]
        for k, s in stack.resources("AWS::EC2::Subnet").items()
        if kind in k
    }


def test_without_source_context_there_is_no_route_at_all(default_stack: Synthesized) -> None:
    default_stack.template.resource_count_is("AWS::EC2::Route", 0)


def test_vpc_cidr_and_three_database_subnets_in_the_given_zones(default_stack: Synthesized) -> None:
    default_stack.template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.1.0.0/16"})
    assert _subnets(default_stack, "DatabaseSubnet") == {
        "10.1.0.0/24": "us-east-1a",
        "10.1.1.0/24": "us-east-1b",
        "10.1.2.0/24": "us-east-1c",
    }


def test_app_subnet_cidrs_are_used_exactly(default_stack: Synthesized) -> None:
    assert _subnets(default_stack, "ApplicationSubnet") == {
        "10.1.10.0/24": "us-east-1a",
        "10.1.11.0/24": "us-east-1b",
        "10.1.12.0/24": "us-east-1c",
    }


def test_with_an_account_three_zones_are_looked_up(env_stack: Synthesized) -> None:
    zones = set(_subnets(env_stack, "DatabaseSubnet").values())
    assert len(zones) == 3
    assert zones == set(_subnets(env_stack, "ApplicationSubnet").values())


def test_no_route_to_the_internet(any_stack: Synthesized) -> None:
    for type_ in (
        "AWS::EC2::InternetGateway",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EgressOnlyInternetGateway",
    ):
        any_stack.template.resource_count_is(type_, 0)
    # The only routes lead to the source network (peering or transit gateway).
    for route in any_stack.resources("AWS::EC2::Route").values():
        targets = set(route["Properties"]) & {
            "GatewayId",
            "NatGatewayId",
            "EgressOnlyInternetGatewayId",
            "InstanceId",
            "NetworkInterfaceId",
        }
        assert targets == set(), route
    for subnet in any_stack.resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_db_subnet_group_holds_only_the_database_subnets(any_stack: Synthesized) -> None:
    _, group = any_stack.one("AWS::RDS::DBSubnetGroup")
    refs = sorted(ref["Ref"] for ref in group["Properties"]["SubnetIds"])
    assert refs == sorted(
        k for k in any_stack.resources("AWS::EC2::Subnet") if "DatabaseSubnet" in k
    )


def test_flow_logs_to_an_encrypted_retained_log_group(default_stack: Synthesized) -> None:
    key, _ = default_stack.one("AWS::KMS::Key")
    group = next(
        k for k in default_stack.resources("AWS::Logs::LogGroup") if k.startswith("NetworkFlowLog")
    )
    default_stack.template.has_resource(
        "AWS::Logs::LogGroup",
        {
            "Properties": {"KmsKeyId": {"Fn::GetAtt": [key, "Arn"]}, "RetentionInDays": 365},
            "DeletionPolicy": "Retain",
        },
    )
    default_stack.template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {
            "ResourceType": "VPC",
            "TrafficType": "ALL",
            "LogDestinationType": "cloud-watch-logs",
            "LogGroupName": {"Ref": group},
        },
    )


def test_default_security_group_is_stripped(default_stack: Synthesized) -> None:
    default_stack.template.has_resource_properties(
        "Custom::VpcRestrictDefaultSG",
        {
            "DefaultSecurityGroupId": {
                "Fn::GetAtt": [Match.string_like_regexp("^NetworkVpc"), "DefaultSecurityGroup"]
            }
        },
    )


def test_database_accepts_only_the_app_tier_rotation_and_runner(default_stack: Synthesized) -> None:
    db_sg = next(
        k
        for k in default_stack.resources("AWS::EC2::SecurityGroup")
        if k.startswith("DatabaseSecurityGroup")
    )
    app_sg = next(
        k
        for k in default_stack.resources("AWS::EC2::SecurityGroup")
        if "ApplicationSecurityGroup" in k
    )
    rules = [
        r["Properties"]
        for r in default_stack.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [db_sg, "GroupId"]}
    ]
    sources = sorted(r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules)
    assert sources == sorted(
        [
            app_sg,
            next(
                k
                for k in default_stack.resources("AWS::EC2::SecurityGroup")
                if k.startswith("RotationSecurityGroup")
            ),
            next(
                k
                for k in default_stack.resources("AWS::EC2::SecurityGroup")
                if k.startswith("RunnerSecurityGroup")
            ),
        ]
    )
    assert {(r["FromPort"], r["ToPort"]) for r in rules} == {(5432, 5432)}
    _, db_group = next(
        (k, v) for k, v in default_stack.resources("AWS::EC2::SecurityGroup").items() if k == db_sg
    )
    # No egress anywhere: CDK's placeholder rule that matches no traffic.
    assert db_group["Properties"]["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"
