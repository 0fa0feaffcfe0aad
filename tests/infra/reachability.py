"""A small, independent network evaluator over a synthesized CloudFormation template.

It reads only the template JSON (security groups and their rules, inline or as separate
AWS::EC2::SecurityGroupIngress/Egress resources, subnets, route tables and routes, peering
connections, transit gateway attachments, VPC endpoints) and answers "may A open a TCP
connection to B on port P", the way VPC networking decides it:

- A's security groups allow the egress to B (B's group, a CIDR covering B, or a prefix list),
- B's security groups allow the ingress from A (A's group or CIDRs covering all of A's subnets),
- and, between VPCs, A's route tables send B's addresses over a link to B's VPC and B's route
  tables send A's addresses back over the same kind of link (longest prefix wins).

Security groups are stateful, so replies need no rule. It deliberately shares no code with
`rdsmigrate.infra`: it is a second opinion on what the constructs produced.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class Rule:
    proto: str
    low: int
    high: int
    kind: str  # "sg", "cidr" or "pl"
    peer: str
    element: str  # how to find (and remove) this rule in the template

    def allows(self, port: int) -> bool:
        return self.proto == "-1" or (self.proto in ("tcp", "6") and self.low <= port <= self.high)


@dataclass
class Node:
    """Something that opens or accepts connections: its groups, subnets and VPC."""

    name: str
    groups: set[str]
    vpc: str
    blocks: list[Net]  # its possible addresses (one per subnet, or the whole VPC)
    route_tables: list[str]
    rules_known: bool = True  # False: its security groups are not in this template
    prefix_list: str | None = None  # a gateway endpoint's service, reached by prefix list


@dataclass
class Network:
    template: dict[str, Any]
    region: str
    ingress: dict[str, list[Rule]] = field(default_factory=dict)
    egress: dict[str, list[Rule]] = field(default_factory=dict)
    routes: dict[str, list[tuple[Net, str, str]]] = field(default_factory=dict)
    vpc_cidrs: dict[str, Net] = field(default_factory=dict)
    subnet_cidr: dict[str, Net] = field(default_factory=dict)
    subnet_table: dict[str, str] = field(default_factory=dict)
    links: dict[str, set[str]] = field(default_factory=dict)  # link id -> the VPCs it joins

    # -- reading the template ---------------------------------------------------------------

    def text(self, value: Any) -> str:
        """A template value as one comparable string (`Ref`s and `GetAtt`s by logical id)."""
        if isinstance(value, str | int):
            return str(value)
        if isinstance(value, dict):
            if "Ref" in value:
                return self.region if value["Ref"] == "AWS::Region" else str(value["Ref"])
            if "Fn::GetAtt" in value:
                name, attribute = value["Fn::GetAtt"]
                return name if attribute == "GroupId" else f"{name}.{attribute}"
            if "Fn::Join" in value:
                separator, parts = value["Fn::Join"]
                return str(separator).join(self.text(p) for p in parts)
        raise ValueError(f"cannot read {value!r}")

    def items(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return [self.text(v) for v in value]
        return [part for part in self.text(value).split(",") if part]

    def resources(self, type_: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, resource in self.template["Resources"].items():
            if resource["Type"] == type_:
                yield name, resource.get("Properties", {})

    def __post_init__(self) -> None:
        # Network ACLs are not modelled: the VPC's default ACL admits everything, so security
        # groups and routes decide. A template with its own ACLs needs a richer evaluator.
        assert not list(self.resources("AWS::EC2::NetworkAclEntry")), "ACLs are not modelled"
        for name, props in self.resources("AWS::EC2::VPC"):
            self.vpc_cidrs[name] = Net(props["CidrBlock"])
        for name, props in self.resources("AWS::EC2::Subnet"):
            self.subnet_cidr[name] = Net(props["CidrBlock"])
        for _, props in self.resources("AWS::EC2::SubnetRouteTableAssociation"):
            self.subnet_table[self.text(props["SubnetId"])] = self.text(props["RouteTableId"])
        for name, props in self.resources("AWS::EC2::SecurityGroup"):
            for direction, key in (
                ("ingress", "SecurityGroupIngress"),
                ("egress", "SecurityGroupEgress"),
            ):
                for index, rule in enumerate(props.get(key, [])):
                    self._add_rule(direction, name, rule, f"{name}/{key}/{index}")
        for type_, direction in (
            ("AWS::EC2::SecurityGroupIngress", "ingress"),
            ("AWS::EC2::SecurityGroupEgress", "egress"),
        ):
            for name, props in self.resources(type_):
                self._add_rule(direction, self.text(props["GroupId"]), props, name)
        for name, props in self.resources("AWS::EC2::Route"):
            target = props.get("VpcPeeringConnectionId") or props.get("TransitGatewayId")
            if target is None:
                target = props.get("GatewayId") or props.get("NatGatewayId") or "other"
            self.routes.setdefault(self.text(props["RouteTableId"]), []).append(
                (Net(props["DestinationCidrBlock"]), self.text(target), name)
            )
        for name, props in self.resources("AWS::EC2::VPCPeeringConnection"):
            self.links[name] = {self.text(props["VpcId"]), self.text(props["PeerVpcId"])}
        for type_ in (
            "AWS::EC2::TransitGatewayVpcAttachment",
            "AWS::EC2::TransitGatewayAttachment",
        ):
            for _, props in self.resources(type_):
                gateway = self.text(props["TransitGatewayId"])
                self.links.setdefault(gateway, set()).add(self.text(props["VpcId"]))

    def _add_rule(self, direction: str, group: str, rule: dict[str, Any], element: str) -> None:
        proto = str(rule.get("IpProtocol"))
        if "SourceSecurityGroupId" in rule or "DestinationSecurityGroupId" in rule:
            kind = "sg"
            peer = self.text(
                rule.get("SourceSecurityGroupId") or rule["DestinationSecurityGroupId"]
            )
        elif "CidrIp" in rule:
            kind, peer = "cidr", str(rule["CidrIp"])
        elif "DestinationPrefixListId" in rule or "SourcePrefixListId" in rule:
            kind = "pl"
            peer = self.text(rule.get("DestinationPrefixListId") or rule["SourcePrefixListId"])
        else:
            return
        low, high = int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535))
        table = self.ingress if direction == "ingress" else self.egress
        table.setdefault(group, []).append(Rule(proto, low, high, kind, peer, element))

    # -- nodes ------------------------------------------------------------------------------

    def subnet_node(self, name: str, groups: list[str], subnets: list[str]) -> Node:
        vpc = self._vpc_of_subnets(subnets)
        return Node(
            name,
            set(groups),
            vpc,
            [self.subnet_cidr[s] for s in subnets],
            [self.subnet_table[s] for s in subnets],
        )

    def _vpc_of_subnets(self, subnets: list[str]) -> str:
        vpcs = {self.text(self.template["Resources"][s]["Properties"]["VpcId"]) for s in subnets}
        assert len(vpcs) == 1, vpcs
        return vpcs.pop()

    def interface_endpoint(self, service: str) -> Node | None:
        for name, props in self.resources("AWS::EC2::VPCEndpoint"):
            if props.get("VpcEndpointType") != "Interface":
                continue
            if self.text(props["ServiceName"]) != f"com.amazonaws.{self.region}.{service}":
                continue
            vpc = self.template["Resources"][self.text(props["VpcId"])]["Properties"]
            dns = vpc.get("EnableDnsSupport") is True and vpc.get("EnableDnsHostnames") is True
            if props.get("PrivateDnsEnabled") is not True or not dns:
                return None  # the SDK would resolve the public name, unreachable from here
            return self.subnet_node(
                name, self.items(props["SecurityGroupIds"]), self.items(props["SubnetIds"])
            )
        return None

    def gateway_endpoint(self, service: str) -> Node | None:
        for name, props in self.resources("AWS::EC2::VPCEndpoint"):
            if self.text(props["ServiceName"]) == f"com.amazonaws.{self.region}.{service}" and (
                props.get("VpcEndpointType") == "Gateway"
            ):
                return Node(
                    name,
                    set(),
                    self.text(props["VpcId"]),
                    [],
                    self.items(props.get("RouteTableIds", [])),
                    rules_known=False,
                    prefix_list=self._prefix_list_of(service),
                )
        return None

    def _prefix_list_of(self, service: str) -> str | None:
        """The token a rule uses for the AWS-managed prefix list of `service`: a deploy-time
        DescribeManagedPrefixLists lookup by the list's name."""
        for name, resource in self.template["Resources"].items():
            if not resource["Type"].startswith("Custom::"):
                continue
            call = self.text(resource["Properties"].get("Create", ""))
            if (
                "describeManagedPrefixLists" in call
                and f"com.amazonaws.{self.region}.{service}" in call
            ):
                return f"{name}.PrefixLists.0.PrefixListId"
        return None

    # -- the question -----------------------------------------------------------------------

    def reaches(self, a: Node, b: Node, port: int) -> bool:
        return self._egress(a, b, port) and self._ingress(a, b, port) and self._routed(a, b)

    def _egress(self, a: Node, b: Node, port: int) -> bool:
        rules = [r for g in a.groups for r in self.egress.get(g, []) if r.allows(port)]
        if b.prefix_list is not None:
            return any(r.kind == "pl" and r.peer == b.prefix_list for r in rules)
        if any(r.kind == "sg" and r.peer in b.groups for r in rules):
            return True
        return _covered(b.blocks, [Net(r.peer) for r in rules if r.kind == "cidr"])

    def _ingress(self, a: Node, b: Node, port: int) -> bool:
        if not b.rules_known:
            return True  # a gateway endpoint has no security group; a foreign one is not ours
        rules = [r for g in b.groups for r in self.ingress.get(g, []) if r.allows(port)]
        if any(r.kind == "sg" and r.peer in a.groups for r in rules):
            return True
        return _covered(a.blocks, [Net(r.peer) for r in rules if r.kind == "cidr"])

    def _routed(self, a: Node, b: Node) -> bool:
        if b.prefix_list is not None:  # gateway endpoint: every table of A must be associated
            return all(table in b.route_tables for table in a.route_tables)
        if a.vpc == b.vpc:
            return True  # the local route, which no one can remove
        return self._one_way(a, b) and (b.route_tables == [] or self._one_way(b, a))

    def _one_way(self, a: Node, b: Node) -> bool:
        local = self.vpc_cidrs.get(a.vpc)
        for table in a.route_tables:
            for block in b.blocks:
                best: tuple[int, str] | None = None
                candidates = list(self.routes.get(table, []))
                if local is not None:
                    candidates.append((local, "local", "local"))
                for destination, target, _ in candidates:
                    if block.subnet_of(destination) and (
                        best is None or destination.prefixlen > best[0]
                    ):
                        best = (destination.prefixlen, target)
                if best is None or not {a.vpc, b.vpc} <= self.links.get(best[1], set()):
                    return False
        return True

    def clients_admitted_by(self, group: str) -> tuple[set[str], list[Rule]]:
        """The groups an ingress rule of `group` admits, and any rule admitting addresses."""
        rules = self.ingress.get(group, [])
        return {r.peer for r in rules if r.kind == "sg"}, [r for r in rules if r.kind != "sg"]


def _covered(blocks: list[Net], by: list[Net]) -> bool:
    return bool(blocks) and all(any(b.subnet_of(n) for n in by) for b in blocks)


def without(template: dict[str, Any], element: str) -> dict[str, Any]:
    """A copy of the template with one rule, route or route-table association removed."""
    mutated = copy.deepcopy(template)
    parts = element.split("/")
    if len(parts) == 1:
        del mutated["Resources"][element]
    else:
        name, key, index = parts
        del mutated["Resources"][name]["Properties"][key][int(index)]
    return mutated
