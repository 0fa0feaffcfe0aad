"""Issue 11 proof: who can reach whom, read from the synthesized template alone.

The evaluator (`reachability.py`) knows nothing of the constructs; it sees the template as
CloudFormation would. For each configuration it shows the runner reaches the staging
database, the source and every AWS API it calls, the staging database reaches the source,
and nothing but the application tier, rotation and runner reaches the database. Then it
removes each rule and route those paths use, one at a time, and the check must fail.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from tests.infra import conftest as cf
from tests.infra.conftest import Synthesized
from tests.infra.reachability import Network, Node, without

pytestmark = pytest.mark.xdist_group("infra")

# The AWS APIs the runner calls: image pull (ecr.api, ecr.dkr, and S3 for the layers), its
# log (logs), `--target stack:NAME` (cloudformation), `secret:ARN` (secretsmanager).
INTERFACE_APIS = ("ecr.api", "ecr.dkr", "logs", "cloudformation", "secretsmanager")

CONTEXTS: dict[str, dict[str, Any]] = {
    "default": {},
    "peering": cf.PEERING_CONTEXT,
    "snapshot": cf.SNAPSHOT_CONTEXT,
    "env": cf.ENV_CONTEXT,
}


def _nodes(net: Network, context: dict[str, Any]) -> dict[str, Node]:
    template = net.template
    resources = template["Resources"]
    outputs = template["Outputs"]
    nodes = {
        "runner": net.subnet_node(
            "runner",
            [net.text(outputs["RunnerSecurityGroupId"]["Value"])],
            net.items(outputs["RunnerSubnetIds"]["Value"]),
        )
    }
    [(_, instance)] = list(net.resources("AWS::RDS::DBInstance"))
    group_name = net.text(instance["DBSubnetGroupName"])
    nodes["database"] = net.subnet_node(
        "database",
        net.items(instance["VPCSecurityGroups"]),
        net.items(resources[group_name]["Properties"]["SubnetIds"]),
    )
    [(_, schedule)] = list(net.resources("AWS::SecretsManager::RotationSchedule"))
    hosted = schedule["HostedRotationLambda"]
    nodes["rotation"] = net.subnet_node(
        "rotation", net.items(hosted["VpcSecurityGroupIds"]), net.items(hosted["VpcSubnetIds"])
    )
    nodes["application"] = net.subnet_node(
        "application",
        [
            k
            for k in resources
            if k.startswith("NetworkApplicationSecurityGroup")
            and resources[k]["Type"] == "AWS::EC2::SecurityGroup"
        ],
        [
            k
            for k in resources
            if k.startswith("NetworkApplicationSubnet")
            and resources[k]["Type"] == "AWS::EC2::Subnet"
        ],
    )
    for api in INTERFACE_APIS:
        endpoint = net.interface_endpoint(api)
        if endpoint is not None:
            nodes[api] = endpoint
    s3 = net.gateway_endpoint("s3")
    if s3 is not None:
        nodes["s3"] = s3
    if "sourceVpcId" in context:
        same_account = "sourceAccount" not in context
        nodes["source"] = Node(
            "source",
            {context["sourceSecurityGroupId"]},
            context["sourceVpcId"],
            [ipaddress.IPv4Network(context["sourceVpcCidr"])],
            context["sourceRouteTableIds"].split(",") if same_account else [],
            # Another account's security group and route tables are its owner's to change
            # (README runbook); only this side of the path is in the template then.
            rules_known=same_account,
        )
        gateway = context.get("sourceTransitGatewayId")
        if gateway is not None:
            # Precondition of the runbook: the source VPC is attached to the gateway already.
            net.links.setdefault(gateway, set()).add(context["sourceVpcId"])
    return nodes


def _paths(context: dict[str, Any]) -> list[tuple[str, str, int]]:
    paths = [
        ("runner", "database", 5432),
        ("application", "database", 5432),
        ("rotation", "database", 5432),
        ("rotation", "secretsmanager", 443),
        *(("runner", api, 443) for api in (*INTERFACE_APIS, "s3")),
    ]
    if "sourceVpcId" in context:
        port = int(context.get("sourcePort", 5432))
        paths += [("runner", "source", port), ("database", "source", port)]
    return paths


def _failing(template: dict[str, Any], name: str) -> list[str]:
    context = CONTEXTS[name]
    net = Network(template, _region(context))
    nodes = _nodes(net, context)
    return [
        f"{a} -> {b}:{port}"
        for a, b, port in _paths(context)
        if a not in nodes or b not in nodes or not net.reaches(nodes[a], nodes[b], port)
    ]


def _region(context: dict[str, Any]) -> str:
    return str(context.get("region", "us-east-1"))


@pytest.fixture(scope="module", params=cf.STACKS)
def configuration(request: pytest.FixtureRequest) -> tuple[str, Synthesized]:
    name = str(request.param)
    return name, request.getfixturevalue(f"{name}_stack")


def test_every_required_path_is_open(configuration: tuple[str, Synthesized]) -> None:
    name, stack = configuration
    assert _failing(stack.json, name) == []


def test_only_application_rotation_and_runner_reach_the_database(
    configuration: tuple[str, Synthesized],
) -> None:
    name, stack = configuration
    net = Network(stack.json, _region(CONTEXTS[name]))
    nodes = _nodes(net, CONTEXTS[name])
    (database_group,) = nodes["database"].groups
    admitted, by_address = net.clients_admitted_by(database_group)
    assert by_address == []  # no CIDR or prefix-list rule: nothing in by address alone
    expected = {g for n in ("application", "rotation", "runner") for g in nodes[n].groups}
    assert admitted == expected
    others = [
        n for n in nodes.values() if n.name not in {"application", "rotation", "runner", "database"}
    ]
    for port in (5432, int(CONTEXTS[name].get("sourcePort", 5432))):
        assert [n.name for n in others if net.reaches(n, nodes["database"], port)] == []


def _load_bearing(net: Network, nodes: dict[str, Node]) -> list[str]:
    """Every rule and route a required path could depend on: ingress on any group, egress of
    the clients (runner, database, rotation, application), every route, and each route table
    association of the S3 gateway endpoint. CDK's placeholder egress (no traffic) is skipped."""
    clients = {
        g for n in ("runner", "database", "rotation", "application") for g in nodes[n].groups
    }
    elements = [r.element for rules in net.ingress.values() for r in rules]
    elements += [
        r.element
        for group, rules in net.egress.items()
        if group in clients
        for r in rules
        if r.peer != "255.255.255.255/32"
    ]
    elements += [element for routes in net.routes.values() for _, _, element in routes]
    s3 = nodes.get("s3")
    if s3 is not None:
        elements += [f"{s3.name}/RouteTableIds/{i}" for i in range(len(s3.route_tables))]
    return elements


def test_removing_any_one_rule_or_route_breaks_a_path(
    configuration: tuple[str, Synthesized],
) -> None:
    name, stack = configuration
    net = Network(stack.json, _region(CONTEXTS[name]))
    elements = _load_bearing(net, _nodes(net, CONTEXTS[name]))
    assert len(elements) >= 10
    still_open = [e for e in elements if _failing(without(stack.json, e), name) == []]
    assert still_open == [], "removing these broke nothing (redundant or unchecked)"


def test_the_evaluator_sees_the_source_side_only_in_the_same_account(
    peering_stack: Synthesized, env_stack: Synthesized
) -> None:
    """Same account: routes back and ingress on the source group are in the template and
    removing one is caught (above); another account: none of them is written here."""
    same = Network(peering_stack.json, "us-east-1")
    assert set(cf.SOURCE_CONTEXT["sourceRouteTableIds"].split(",")) <= set(same.routes)
    assert cf.SOURCE_CONTEXT["sourceSecurityGroupId"] in same.ingress
    other = Network(env_stack.json, "eu-west-1")
    assert not set(cf.SOURCE_CONTEXT["sourceRouteTableIds"].split(",")) & set(other.routes)
    assert cf.SOURCE_CONTEXT["sourceSecurityGroupId"] not in other.ingress


def _element(stack: Synthesized, type_: str, match: dict[str, Any]) -> str:
    (name,) = [
        k
        for k, v in stack.resources(type_).items()
        if all(v["Properties"].get(key) == value for key, value in match.items())
    ]
    return name


def test_without_the_s3_prefix_list_rule_the_image_cannot_be_pulled(
    default_stack: Synthesized,
) -> None:
    """One named example of the sweep above: the layers of the image come from S3."""
    rule = next(
        k
        for k, v in default_stack.resources("AWS::EC2::SecurityGroupEgress").items()
        if "DestinationPrefixListId" in v["Properties"]
    )
    assert _failing(without(default_stack.json, rule), "default") == ["runner -> s3:443"]


def test_without_a_route_back_the_source_cannot_answer(peering_stack: Synthesized) -> None:
    route = _element(
        peering_stack,
        "AWS::EC2::Route",
        {"RouteTableId": cf.SOURCE_CONTEXT["sourceRouteTableIds"].split(",")[1]},
    )
    assert _failing(without(peering_stack.json, route), "peering") == [
        "runner -> source:6432",
        "database -> source:6432",
    ]


def test_without_private_dns_the_endpoint_does_not_count(default_stack: Synthesized) -> None:
    mutated = copy.deepcopy(default_stack.json)
    for resource in mutated["Resources"].values():
        if resource["Properties"].get("ServiceName") == "com.amazonaws.us-east-1.logs":
            resource["Properties"]["PrivateDnsEnabled"] = False
    assert _failing(mutated, "default") == ["runner -> logs:443"]
