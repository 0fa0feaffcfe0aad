"""The one stack: composes network, key, database, rotation and monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags, Validations
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
from rdsmigrate.infra.rotation import SecretRotation
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
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            instance=self.database.instance,
            key=key,
            environment_suffix=settings.environment_suffix,
            alarm_email=settings.alarm_email,
            connections_threshold=settings.connections_alarm_threshold,
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
        }
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
