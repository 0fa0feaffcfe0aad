"""The one stack: composes network, key, database, rotation, runner, source link, monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Environment, Fn, Stack, Tags, Validations
from cdk_nag import (
    AwsSolutionsChecks,
    HIPAASecurityChecks,
    NIST80053R5Checks,
    PCIDSS321Checks,
)
from constructs import Construct

from rdsmigrate.infra import constants as c
from rdsmigrate.infra.database import Database
from rdsmigrate.infra.encryption import EncryptionKey
from rdsmigrate.infra.monitoring import Monitoring
from rdsmigrate.infra.network import Network
from rdsmigrate.infra.peering import SourceLink
from rdsmigrate.infra.rotation import SecretRotation
from rdsmigrate.infra.runner import Runner
from rdsmigrate.infra.settings import StagingSettings


class RdsMigrationStack(Stack):
    """Staging RDS PostgreSQL for the payments database, built from validated settings."""

    def __init__(
        self, scope: Construct, id_: str, *, settings: StagingSettings, **kwargs: Any
    ) -> None:
        # Analytics reporting adds the CDKMetadata resource, as `cdk synth` does by default, so
        # `python app.py` and the CLI emit the same template (and cfn-lint sees a CDK template).
        kwargs.setdefault("analytics_reporting", True)
        super().__init__(scope, id_, description=c.STACK_DESCRIPTION, **kwargs)
        self.settings = settings
        for key, value in c.TAGS.items():
            Tags.of(self).add(key, value)
        Tags.of(self).add("EnvironmentSuffix", settings.environment_suffix)

        self.encryption = EncryptionKey(
            self, "Encryption", environment_suffix=settings.environment_suffix
        )
        key = self.encryption.key
        self.network = Network(
            self,
            "Network",
            vpc_cidr=settings.staging_vpc_cidr,
            app_subnet_cidrs=settings.app_subnet_cidrs,
            availability_zones=settings.availability_zones,
            key=key,
        )
        self.database = Database(
            self,
            "Database",
            settings=settings,
            vpc=self.network.vpc,
            subnets=self.network.database_subnets,
            clients=self.network.app_security_group,
            key=key,
        )
        self.rotation = SecretRotation(
            self,
            "Rotation",
            instance=self.database.instance,
            secret=self.database.secret,
            vpc=self.network.vpc,
            subnets=self.network.database_subnets,
            endpoint=self.network.secrets_manager_endpoint,
        )
        source = settings.source
        self.runner = Runner(
            self,
            "Runner",
            vpc=self.network.vpc,
            subnets=self.network.database_subnets,
            database_security_group=self.database.security_group,
            endpoint_security_group=self.network.endpoint_security_group,
            secrets_manager_endpoint=self.network.secrets_manager_endpoint,
            s3_prefix_list_id=self.network.s3_prefix_list_id,
            staging_secret=self.database.secret,
            source_secret_arn=source.secret_arn if source else None,
            key=key,
        )
        self.source_link: SourceLink | None = None
        if source is not None:
            self.source_link = SourceLink(
                self,
                "Source",
                source=source,
                vpc=self.network.vpc,
                vpc_cidr=settings.staging_vpc_cidr,
                subnets=self.network.vpc.isolated_subnets,
                clients={
                    "database": self.database.security_group,
                    "runner": self.runner.security_group,
                },
            )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            instance=self.database.instance,
            key=key,
            environment_suffix=settings.environment_suffix,
            alarm_email=settings.alarm_email,
            connections_threshold=settings.connections_alarm_threshold,
            source_instance_id=source.db_instance_id if source else None,
            source_account=source.account if source else None,
        )
        self._outputs()

    def _outputs(self) -> None:
        instance = self.database.instance
        outputs = {
            "DatabaseEndpoint": (instance.db_instance_endpoint_address, "Database host name"),
            "DatabasePort": (instance.db_instance_endpoint_port, "Database port"),
            "DatabaseName": (c.DATABASE_NAME, "Database name (inherited when restored)"),
            "DatabaseSecretArn": (self.database.secret.secret_arn, "Master credentials secret"),
            "DatabaseSecurityGroupId": (
                self.database.security_group.security_group_id,
                "Database security group",
            ),
            "VpcId": (self.network.vpc.vpc_id, "Staging VPC"),
            "AlarmTopicArn": (self.monitoring.topic.topic_arn, "SNS topic of the alarms"),
            # Read by `rdsmigrate aws run` (names agreed in the README's runner section).
            "RunnerClusterArn": (self.runner.cluster.cluster_arn, "ECS cluster of the runner"),
            "RunnerTaskDefinitionArn": (
                self.runner.task_definition.task_definition_arn,
                f"Fargate task definition {c.RUNNER_TASK_FAMILY}",
            ),
            "RunnerContainerName": (
                c.RUNNER_CONTAINER_NAME,
                "Container whose command `rdsmigrate aws run` sets",
            ),
            "RunnerSubnetIds": (
                Fn.join(",", list(self.runner.subnet_ids)),
                "Isolated subnets the runner task starts in (no public IP)",
            ),
            "RunnerSecurityGroupId": (
                self.runner.security_group.security_group_id,
                "Security group of the runner task",
            ),
            "RunnerLogGroupName": (
                self.runner.log_group.log_group_name,
                f"Log group of the runner (streams {c.RUNNER_LOG_STREAM_PREFIX}/"
                f"{c.RUNNER_CONTAINER_NAME}/<task id>)",
            ),
        }
        if self.source_link is not None:
            kind = (
                "TransitGatewayAttachmentId"
                if self.settings.source_transit_gateway_id
                else "PeeringConnectionId"
            )
            outputs[kind] = (
                self.source_link.link.ref,
                "Link to the source VPC; the source's owner routes the staging CIDR to it "
                "when the source is in another account (README runbook)",
            )
        suffix = self.settings.environment_suffix
        for name, (value, description) in outputs.items():
            CfnOutput(
                self, name, value=value, description=description, export_name=f"{name}-{suffix}"
            )


def environment(settings: StagingSettings) -> Environment:
    return Environment(account=settings.account, region=settings.region)


def add_compliance_checks(app: App) -> None:
    """The four cdk-nag packs as CDK validation plugins: any unacknowledged finding fails synth."""
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app),
        PCIDSS321Checks(app),
        NIST80053R5Checks(app),
        HIPAASecurityChecks(app),
    )


def build(app: App) -> RdsMigrationStack:
    """Validate the context, then build the stack (the order `app.py` and tests rely on)."""
    settings = StagingSettings.from_context(app.node)
    stack = RdsMigrationStack(app, c.STACK_ID, settings=settings, env=environment(settings))
    add_compliance_checks(app)
    return stack
