"""The network path to the development (source) database: peering or transit gateway.

Built only with the source context. The staging side is always written here: the link, a
route to the source CIDR in every isolated route table, and egress from the staging database
(its subscription connects to the source) and from the runner. The source side (routes back
to the staging CIDR, ingress on the source security group) can only be written when the
source is in this account; for another account the README lists the commands its owner runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnResource
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from rdsmigrate.infra.settings import SourceNetwork


class SourceLink(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        source: SourceNetwork,
        vpc: ec2.IVpc,
        vpc_cidr: str,
        subnets: Sequence[ec2.ISubnet],
        clients: dict[str, ec2.ISecurityGroup],
    ) -> None:
        """`clients` are the staging security groups that connect to the source, by the
        name used in rule descriptions (the database for its subscription, the runner)."""
        super().__init__(scope, id_)
        self.link: CfnResource
        route_target: dict[str, str]
        if source.transit_gateway_id is not None:
            self.link = ec2.CfnTransitGatewayVpcAttachment(
                self,
                "TransitGatewayAttachment",
                transit_gateway_id=source.transit_gateway_id,
                vpc_id=vpc.vpc_id,
                subnet_ids=[s.subnet_id for s in subnets],
            )
            route_target = {"transit_gateway_id": source.transit_gateway_id}
        else:
            self.link = ec2.CfnVPCPeeringConnection(
                self,
                "Peering",
                vpc_id=vpc.vpc_id,
                peer_vpc_id=source.vpc_id,
                peer_owner_id=source.account,
                peer_role_arn=source.peer_role_arn,
            )
            route_target = {"vpc_peering_connection_id": self.link.ref}

        for index, subnet in enumerate(subnets, start=1):
            route = ec2.CfnRoute(
                self,
                f"ToSource{index}",
                route_table_id=subnet.route_table.route_table_id,
                destination_cidr_block=source.vpc_cidr,
                **route_target,
            )
            self._after_link(route, source)

        # Security group references work across a same-region peering within one account;
        # across accounts they need the owner's id, which AWS::EC2::SecurityGroupEgress has no
        # field for, and across a transit gateway a feature the gateway may lack: CIDRs there.
        by_reference = source.same_account and source.transit_gateway_id is None
        peer = (
            {"destination_security_group_id": source.security_group_id}
            if by_reference
            else {"cidr_ip": source.vpc_cidr}
        )
        for name, group in clients.items():
            # Separate resources, not rules inline in the group: EC2 accepts a reference to a
            # group of another VPC only once the peering is active, so they wait for it.
            rule = ec2.CfnSecurityGroupEgress(
                self,
                f"EgressFrom{name.title()}",
                group_id=group.security_group_id,
                ip_protocol="tcp",
                from_port=source.port,
                to_port=source.port,
                description=f"{name} to the source database",
                **peer,
            )
            if by_reference:
                rule.node.add_dependency(self.link)

        if source.same_account:
            self._source_side(source, vpc_cidr, subnets, clients, route_target, by_reference)

    def _after_link(self, route: ec2.CfnRoute, source: SourceNetwork) -> None:
        """A route to a transit gateway fails until the attachment exists, and names only the
        gateway; a route to the peering `Ref`s it, which orders them already (cfn-lint W3005)."""
        if source.transit_gateway_id is not None:
            route.node.add_dependency(self.link)

    def _source_side(
        self,
        source: SourceNetwork,
        vpc_cidr: str,
        subnets: Sequence[ec2.ISubnet],
        clients: dict[str, ec2.ISecurityGroup],
        route_target: dict[str, str],
        by_reference: bool,
    ) -> None:
        for index, table in enumerate(source.route_table_ids, start=1):
            route = ec2.CfnRoute(
                self,
                f"FromSource{index}",
                route_table_id=table,
                destination_cidr_block=vpc_cidr,
                **route_target,
            )
            self._after_link(route, source)
        common = {
            "group_id": source.security_group_id,
            "ip_protocol": "tcp",
            "from_port": source.port,
            "to_port": source.port,
        }
        if by_reference:
            for name, group in clients.items():
                rule = ec2.CfnSecurityGroupIngress(
                    self,
                    f"SourceIngressFrom{name.title()}",
                    source_security_group_id=group.security_group_id,
                    description=f"PostgreSQL from the staging {name}",
                    **common,
                )
                rule.node.add_dependency(self.link)
        else:
            # Both clients live in the database subnets: admit those, not the whole VPC.
            for index, subnet in enumerate(subnets, start=1):
                ec2.CfnSecurityGroupIngress(
                    self,
                    f"SourceIngressFromSubnet{index}",
                    cidr_ip=subnet.ipv4_cidr_block,
                    description="PostgreSQL from the staging database and runner subnets",
                    **common,
                )
