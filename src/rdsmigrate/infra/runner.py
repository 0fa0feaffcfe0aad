"""The migration runner: a Fargate task in the isolated subnets that runs `rdsmigrate`.

`rdsmigrate aws run -- <command>` (on a laptop) starts this task with the command as the
container's arguments; the task reaches the staging database directly, the source through
the peering or transit gateway (see `peering.py`), and AWS only through VPC endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Aws, IgnoreMode, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from rdsmigrate.infra import constants as c
from rdsmigrate.infra.nag import acknowledge
from rdsmigrate.infra.network import DATABASE_SUBNET_GROUP

# The repository root: the `Dockerfile` and the `.dockerignore` that limits the build context.
IMAGE_DIRECTORY = Path(__file__).resolve().parents[3]


class Runner(Construct):
    """Cluster, task definition, roles, log group and security group of the runner.

    Both roles get customer managed policies written out here, and CDK's own grants to them are
    switched off (`without_policy_updates`): every permission the task has is in this file,
    and none has a `*` resource except ECR's GetAuthorizationToken, which has no other form.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        database_security_group: ec2.ISecurityGroup,
        endpoint_security_group: ec2.ISecurityGroup,
        secrets_manager_endpoint: ec2.IInterfaceVpcEndpoint,
        s3_prefix_list_id: str,
        staging_secret: secretsmanager.ISecret,
        source_secret_arn: str | None,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id_)
        self.subnet_ids: Sequence[str] = vpc.select_subnets(
            subnet_group_name=DATABASE_SUBNET_GROUP
        ).subnet_ids
        self.security_group = self._security_group(
            vpc,
            database_security_group,
            endpoint_security_group,
            secrets_manager_endpoint,
            s3_prefix_list_id,
        )
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            encryption_key=key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(IMAGE_DIRECTORY),
            platform=ecr_assets.Platform.LINUX_AMD64,
            ignore_mode=IgnoreMode.DOCKER,
        )
        execution_role = self._execution_role()
        task_role = self._task_role(staging_secret, source_secret_arn, key)
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=c.RUNNER_TASK_FAMILY,
            cpu=c.RUNNER_CPU,
            memory_limit_mib=c.RUNNER_MEMORY_MIB,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            execution_role=execution_role.without_policy_updates(),
            task_role=task_role.without_policy_updates(),
        )
        self.container = self.task_definition.add_container(
            c.RUNNER_CONTAINER_NAME,
            container_name=c.RUNNER_CONTAINER_NAME,
            image=ecs.ContainerImage.from_docker_image_asset(self.image),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=c.RUNNER_LOG_STREAM_PREFIX, log_group=self.log_group
            ),
        )

    def _security_group(
        self,
        vpc: ec2.IVpc,
        database: ec2.ISecurityGroup,
        endpoints: ec2.ISecurityGroup,
        secrets_manager: ec2.IInterfaceVpcEndpoint,
        s3_prefix_list_id: str,
    ) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="rdsmigrate runner task: staging database, source, AWS API endpoints",
            allow_all_outbound=False,
        )
        https = ec2.Port.tcp(c.HTTPS_PORT)
        group.connections.allow_to(
            database, ec2.Port.tcp(c.DATABASE_PORT), "rdsmigrate runner to the staging database"
        )
        group.connections.allow_to(
            endpoints, https, "rdsmigrate runner to ECR, Logs, CloudFormation"
        )
        # Egress only: the Secrets Manager endpoint already admits the whole VPC on 443.
        for endpoint_group in secrets_manager.connections.security_groups:
            group.add_egress_rule(
                ec2.Peer.security_group_id(endpoint_group.security_group_id),
                https,
                "rdsmigrate runner to the Secrets Manager endpoint",
            )
        group.add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list_id),
            https,
            "rdsmigrate runner to S3 (ECR image layers) through the gateway endpoint",
        )
        return group

    def _role(
        self, name: str, description: str, statements: list[iam.PolicyStatement]
    ) -> tuple[iam.Role, iam.ManagedPolicy]:
        """A role ECS tasks assume, with one customer managed policy (no inline policy)."""
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"rdsmigrate runner: {description}",
        )
        policy = iam.ManagedPolicy(
            self,
            f"{name}Policy",
            description=f"rdsmigrate runner: {description}",
            roles=[role],
            statements=statements,
        )
        return role, policy

    def _execution_role(self) -> iam.Role:
        """What ECS itself needs to start the task: pull the image, create the log stream."""
        role, policy = self._role(
            "Execution",
            "pull this stack's image, write its log group",
            [
                iam.PolicyStatement(
                    sid="EcrLogin",
                    actions=["ecr:GetAuthorizationToken"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="PullTheRunnerImage",
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    resources=[self.image.repository.repository_arn],
                ),
                iam.PolicyStatement(
                    sid="WriteTheRunnerLog",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
            ],
        )
        acknowledge(
            policy,
            "ecr:GetAuthorizationToken has no resource-level permissions (IAM requires "
            "Resource *); it only issues a registry login token, and the pull itself is "
            "limited to this stack's asset repository by the next statement.",
            "AwsSolutions-IAM5[Resource::*]",
        )
        return role

    def _task_role(
        self, staging_secret: secretsmanager.ISecret, source_secret_arn: str | None, key: kms.IKey
    ) -> iam.Role:
        """What `rdsmigrate` inside the task calls: `stack:NAME` and `secret:ARN` specs."""
        secrets = [staging_secret.secret_arn]
        if source_secret_arn is not None:
            secrets.append(source_secret_arn)
        role, _ = self._role(
            "Task",
            "DescribeStacks on this stack, GetSecretValue on the two secrets",
            [
                iam.PolicyStatement(
                    sid="ReadThisStacksOutputs",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[Aws.STACK_ID],
                ),
                iam.PolicyStatement(
                    sid="ReadTheDatabaseCredentials",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=secrets,
                ),
                iam.PolicyStatement(
                    sid="DecryptTheStagingSecret",
                    actions=["kms:Decrypt"],
                    resources=[key.key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"
                        }
                    },
                ),
            ],
        )
        return role
