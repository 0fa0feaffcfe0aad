"""Issue 11 point 1: the path to the development network, per configuration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import conftest as cf
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

SOURCE_TABLES = cf.SOURCE_CONTEXT["sourceRouteTableIds"].split(",")
SOURCE_GROUP = cf.SOURCE_CONTEXT["sourceSecurityGroupId"]


def _routes(stack: Synthesized) -> list[dict[str, Any]]:
    return [r["Properties"] for r in stack.resources("AWS::EC2::Route").values()]


def _isolated_tables(stack: Synthesized) -> list[dict[str, str]]:
    return sorted(
        ({"Ref": k} for k in stack.resources("AWS::EC2::RouteTable") if "DatabaseSubnet" in k),
        key=lambda r: r["Ref"],
    )


def _group(stack: Synthesized, prefix: str) -> str:
    (name,) = [k for k in stack.resources("AWS::EC2::SecurityGroup") if k.startswith(prefix)]
    return name


def test_same_account_peering_and_routes_both_ways(peering_stack: Synthesized) -> None:
    peering, props = peering_stack.one("AWS::EC2::VPCPeeringConnection")
    assert props["Properties"]["PeerVpcId"] == cf.SOURCE_CONTEXT["sourceVpcId"]
    assert "PeerOwnerId" not in props["Properties"] and "PeerRoleArn" not in props["Properties"]
    routes = _routes(peering_stack)
    to_source = [r for r in routes if r["DestinationCidrBlock"] == "10.20.0.0/16"]
    assert sorted((r["RouteTableId"] for r in to_source), key=lambda r: r["Ref"]) == (
        _isolated_tables(peering_stack)
    )
    back = [r for r in routes if r["DestinationCidrBlock"] == "10.1.0.0/16"]
    assert sorted(r["RouteTableId"] for r in back) == sorted(SOURCE_TABLES)
    assert all(r["VpcPeeringConnectionId"] == {"Ref": peering} for r in routes)


def test_cross_account_peering_uses_the_peer_role_and_writes_only_this_side(
    env_stack: Synthesized,
) -> None:
    _, props = env_stack.one("AWS::EC2::VPCPeeringConnection")
    assert props["Properties"]["PeerOwnerId"] == cf.SOURCE_ACCOUNT
    assert props["Properties"]["PeerRoleArn"] == cf.ENV_CONTEXT["sourcePeerRoleArn"]
    routes = _routes(env_stack)
    assert {r["DestinationCidrBlock"] for r in routes} == {"10.20.0.0/16"}
    assert len(routes) == 3
    for rule in env_stack.resources("AWS::EC2::SecurityGroupIngress").values():
        assert rule["Properties"]["GroupId"] != SOURCE_GROUP


def test_transit_gateway_attachment_on_the_isolated_subnets(snapshot_stack: Synthesized) -> None:
    attachment, resource = snapshot_stack.one("AWS::EC2::TransitGatewayVpcAttachment")
    props = resource["Properties"]
    assert props["TransitGatewayId"] == cf.TRANSIT_GATEWAY
    assert sorted(s["Ref"] for s in props["SubnetIds"]) == sorted(
        k for k in snapshot_stack.resources("AWS::EC2::Subnet") if "DatabaseSubnet" in k
    )
    snapshot_stack.template.resource_count_is("AWS::EC2::VPCPeeringConnection", 0)
    routes = snapshot_stack.resources("AWS::EC2::Route")
    assert len(routes) == 3 + len(SOURCE_TABLES)
    for route in routes.values():
        assert route["Properties"]["TransitGatewayId"] == cf.TRANSIT_GATEWAY
        # A route to a transit gateway fails until the attachment exists.
        assert attachment in route["DependsOn"]


def _egress_to_source(stack: Synthesized, group: str) -> list[dict[str, Any]]:
    inline = stack.json["Resources"][group]["Properties"].get("SecurityGroupEgress", [])
    separate = [
        v["Properties"]
        for v in stack.resources("AWS::EC2::SecurityGroupEgress").values()
        if v["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    ]
    return [
        r
        for r in [*inline, *separate]
        if r.get("DestinationSecurityGroupId") == SOURCE_GROUP or r.get("CidrIp") == "10.20.0.0/16"
    ]


@pytest.mark.parametrize(
    ("name", "peer", "port"),
    [
        ("peering", {"DestinationSecurityGroupId": SOURCE_GROUP}, 6432),
        ("snapshot", {"CidrIp": "10.20.0.0/16"}, 5432),  # no SG references over a gateway
        ("env", {"CidrIp": "10.20.0.0/16"}, 5432),  # nor across accounts in an egress rule
    ],
)
def test_database_and_runner_egress_to_the_source_port(
    request: pytest.FixtureRequest, name: str, peer: dict[str, str], port: int
) -> None:
    stack: Synthesized = request.getfixturevalue(f"{name}_stack")
    for prefix in ("DatabaseSecurityGroup", "RunnerSecurityGroup"):
        (rule,) = _egress_to_source(stack, _group(stack, prefix))
        assert {k: rule[k] for k in peer} == peer
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", port, port)


def test_egress_naming_the_peer_group_waits_for_the_peering(peering_stack: Synthesized) -> None:
    """EC2 refuses a reference to another VPC's group before the peering is active."""
    peering, _ = peering_stack.one("AWS::EC2::VPCPeeringConnection")
    rules = [
        r
        for r in peering_stack.resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"].get("DestinationSecurityGroupId") == SOURCE_GROUP
    ]
    assert len(rules) == 2
    for rule in rules:
        assert peering in rule["DependsOn"]


def test_no_egress_to_the_source_without_source_context(default_stack: Synthesized) -> None:
    for prefix in ("DatabaseSecurityGroup", "RunnerSecurityGroup"):
        assert _egress_to_source(default_stack, _group(default_stack, prefix)) == []


def test_source_group_admits_the_staging_database_and_runner(peering_stack: Synthesized) -> None:
    rules = [
        v
        for v in peering_stack.resources("AWS::EC2::SecurityGroupIngress").values()
        if v["Properties"]["GroupId"] == SOURCE_GROUP
    ]
    sources = sorted(r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules)
    assert sources == sorted(
        [
            _group(peering_stack, "DatabaseSecurityGroup"),
            _group(peering_stack, "RunnerSecurityGroup"),
        ]
    )
    peering, _ = peering_stack.one("AWS::EC2::VPCPeeringConnection")
    for rule in rules:
        assert (rule["Properties"]["FromPort"], rule["Properties"]["ToPort"]) == (6432, 6432)
        assert peering in rule["DependsOn"]  # a peer's group is referable once it is active


def test_over_a_transit_gateway_the_source_admits_the_database_subnets(
    snapshot_stack: Synthesized,
) -> None:
    rules = [
        v["Properties"]
        for v in snapshot_stack.resources("AWS::EC2::SecurityGroupIngress").values()
        if v["Properties"]["GroupId"] == SOURCE_GROUP
    ]
    assert sorted(r["CidrIp"] for r in rules) == ["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24"]
