"""The staging VPC: isolated subnets only, no NAT, flow logs, closed default security group."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from rdsmigrate.infra import constants as c
from rdsmigrate.infra.nag import acknowledge, in_compliance_packs

DATABASE_SUBNET_GROUP = "Database"
# The construct id aws-cdk-lib gives the singleton function behind every AwsCustomResource.
AWS_CUSTOM_RESOURCE_FUNCTION = "AWS679f53fac002430cb0da5b7982bd2287"

# The AWS APIs the migration runner calls from the isolated subnets, besides Secrets Manager
# (which rotation already reaches): pulling its image (ECR API + registry), writing its log,
# reading this stack's outputs (`--target stack:NAME`).
RUNNER_API_ENDPOINTS = {
    "EcrApiEndpoint": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDockerEndpoint": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "LogsEndpoint": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "CloudFormationEndpoint": ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION,
}


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
        self._runner_endpoints()

    def _runner_endpoints(self) -> None:
        """Interface endpoints share one security group that admits only the clients given to
        `allow_endpoint_clients`; S3 is a gateway endpoint (free) because ECR serves image
        layers from S3, limited by its policy to ECR's layer bucket."""
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints of ECR, CloudWatch Logs and CloudFormation",
            allow_all_outbound=False,
        )
        self.api_endpoints = {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.database_subnets,
                private_dns_enabled=True,
                security_groups=[self.endpoint_security_group],
                open=False,
            )
            for name, service in RUNNER_API_ENDPOINTS.items()
        }
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint",
            service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[self.database_subnets],
        )
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="EcrImageLayersOnly",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::prod-{Aws.REGION}-starport-layer-bucket/*"],
            )
        )
        self.s3_prefix_list_id = self._s3_prefix_list_id()

    def _s3_prefix_list_id(self) -> str:
        """The id of the region's S3 prefix list, for a security group egress rule.

        CloudFormation returns no prefix list id for a gateway endpoint, and the ids differ by
        region; a context lookup would need an account at synth time. So an SDK call at deploy
        time reads it (DescribeManagedPrefixLists takes no resource-level permissions).
        """
        name = f"com.amazonaws.{Aws.REGION}.s3"
        call = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={"Filters": [{"Name": "prefix-list-name", "Values": [name]}]},
            physical_resource_id=cr.PhysicalResourceId.of(name),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        lookup = cr.AwsCustomResource(
            self,
            "S3PrefixList",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
        )
        self._acknowledge_lookup(lookup)
        return lookup.get_response_field("PrefixLists.0.PrefixListId")

    def _acknowledge_lookup(self, lookup: cr.AwsCustomResource) -> None:
        acknowledge(
            lookup.node.find_child("CustomResourcePolicy"),
            "ec2:DescribeManagedPrefixLists supports no resource-level permissions, so IAM "
            "requires Resource *; the call only reads the ids of AWS-managed prefix lists. The "
            "inline policy is the one AwsCustomResource generates for exactly that call.",
            "AwsSolutions-IAM5[Resource::*]",
            *in_compliance_packs("IAMNoInlinePolicy"),
        )
        # AwsCustomResource shares one function per stack, created at the stack's root.
        function = Stack.of(self).node.find_child(AWS_CUSTOM_RESOURCE_FUNCTION)
        resource = function.node.default_child
        if isinstance(resource, lambda_.CfnFunction):
            # One deploy-time call: one concurrent execution is all it ever needs.
            resource.reserved_concurrent_executions = 1
            # Its only DependsOn is its role, which the Role GetAtt orders already (W3005).
            resource.add_deletion_override("DependsOn")
        acknowledge(
            function,
            "The deploy-time prefix-list lookup calls the EC2 API, which the isolated subnets "
            "cannot reach (no EC2 endpoint, no NAT); CloudFormation invokes it and reports a "
            "failure as a failed deployment, so a dead-letter queue would never hold anything "
            "to act on. Its role writes only its own logs (AWSLambdaBasicExecutionRole).",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            *in_compliance_packs("LambdaInsideVPC"),
            *in_compliance_packs("LambdaDLQ", ("HIPAA.Security", "NIST.800.53.R5")),
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
