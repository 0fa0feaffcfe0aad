"""The staging VPC: isolated subnets only, no NAT, flow logs, closed default security group."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from rdsmigrate.infra import constants as c
from rdsmigrate.infra.nag import acknowledge, in_compliance_packs

DATABASE_SUBNET_GROUP = "Database"


class Network(Construct):
    """Database subnets come from CDK's allocator (the first /24s of the VPC); application
    subnets take the exact `appSubnetCidrs` blocks the application team already routes to.

    Nothing here has a route to the internet, so AWS APIs the stack needs at run time (Secrets
    Manager, for rotation) are reached through interface endpoints.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc_cidr: str,
        app_subnet_cidrs: Sequence[str],
        availability_zones: Sequence[str] | None,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id_)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            availability_zones=list(availability_zones) if availability_zones else None,
            max_azs=None if availability_zones else c.AVAILABILITY_ZONE_COUNT,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=DATABASE_SUBNET_GROUP,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=24,
                )
            ],
        )
        self.database_subnets = ec2.SubnetSelection(subnet_group_name=DATABASE_SUBNET_GROUP)
        self.app_subnets: list[ec2.Subnet] = [
            ec2.Subnet(
                self,
                f"ApplicationSubnet{index + 1}",
                vpc_id=self.vpc.vpc_id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
            )
            for index, (cidr, zone) in enumerate(
                zip(app_subnet_cidrs, self.vpc.availability_zones, strict=True)
            )
        ]
        self.app_security_group = ec2.SecurityGroup(
            self,
            "ApplicationSecurityGroup",
            vpc=self.vpc,
            description="Staging application tier (the only client of the database)",
            allow_all_outbound=True,
        )

        flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        acknowledge(
            self.vpc.node.find_child("FlowLog"),
            "The inline policy is the one CDK generates for the flow-log role, scoped to this "
            "log group; a separate managed policy would grant exactly the same and nothing else.",
            *in_compliance_packs("IAMNoInlinePolicy"),
        )

        self._drop_redundant_provider_dependency()

        self.secrets_manager_endpoint = self.vpc.add_interface_endpoint(
            "SecretsManagerEndpoint",
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            subnets=self.database_subnets,
            private_dns_enabled=True,
            open=False,
        )
        self.secrets_manager_endpoint.connections.allow_from(
            ec2.Peer.ipv4(vpc_cidr),  # the literal, so the rule can be reviewed in the template
            ec2.Port.tcp(443),
            "HTTPS to Secrets Manager from inside the VPC (rotation function, application)",
        )

    def _drop_redundant_provider_dependency(self) -> None:
        """CDK's provider Lambda for Custom::VpcRestrictDefaultSG both `DependsOn` its role and
        `GetAtt`s it; the GetAtt already orders them, and the duplicate is cfn-lint W3005."""
        provider = Stack.of(self).node.try_find_child(
            "Custom::VpcRestrictDefaultSGCustomResourceProvider"
        )
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if isinstance(handler, CfnResource):
            handler.add_deletion_override("DependsOn")
