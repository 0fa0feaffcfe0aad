"""The staging PostgreSQL instance, its parameter group, subnet group and security group."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from rdsmigrate.infra import constants as c
from rdsmigrate.infra.nag import acknowledge, in_compliance_packs
from rdsmigrate.infra.settings import StagingSettings


def parameters() -> dict[str, str]:
    """Server settings; `shared_buffers` is deliberately absent.

    RDS sets it to `{DBInstanceClassMemory/32768}` 8 kB pages (a quarter of RAM) for whatever
    class `instanceClass` selects; a fixed page count would be wrong for every other class.
    `log_statement = ddl` rather than `all`: the latter writes every ALTER ROLE ... PASSWORD the
    rotation function issues to CloudWatch Logs.
    """
    return {
        "rds.force_ssl": "1",
        "max_connections": str(c.MAX_CONNECTIONS),
        "log_statement": "ddl",
        "log_min_duration_statement": str(c.LOG_MIN_DURATION_STATEMENT_MS),
    }


class Database(Construct):
    """Either a new instance or, with `snapshotIdentifier`, the development snapshot restored.

    Both paths get the same network placement, parameters, windows, monitoring, IAM auth,
    storage autoscaling and CA; they differ only where RDS itself differs (a restored instance
    inherits its database name, master user and encryption from the snapshot).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        settings: StagingSettings,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        clients: ec2.ISecurityGroup,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, id_)
        engine = rds.DatabaseInstanceEngine.postgres(version=settings.engine)
        self.parameter_group = rds.ParameterGroup(
            self,
            "ParameterGroup",
            engine=engine,
            description=f"Staging PostgreSQL {settings.engine_version}: TLS only, DDL logging",
            parameters=parameters(),
        )
        self.subnet_group = rds.SubnetGroup(
            self,
            "SubnetGroup",
            description="Staging database subnets only (no application subnets)",
            vpc=vpc,
            vpc_subnets=subnets,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Staging RDS PostgreSQL: 5432 from the application tier and rotation only",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            clients, ec2.Port.tcp(c.DATABASE_PORT), "PostgreSQL from the application tier"
        )

        common = {
            "engine": engine,
            "instance_type": ec2.InstanceType(settings.instance_type_name),
            "vpc": vpc,
            "subnet_group": self.subnet_group,
            "security_groups": [self.security_group],
            "port": c.DATABASE_PORT,
            "parameter_group": self.parameter_group,
            "multi_az": True,
            "publicly_accessible": False,
            "storage_type": rds.StorageType.GP3,
            "allocated_storage": c.ALLOCATED_STORAGE_GIB,
            "max_allocated_storage": c.MAX_ALLOCATED_STORAGE_GIB,
            "iam_authentication": True,
            "ca_certificate": rds.CaCertificate.RDS_CA_RSA2048_G1,
            "copy_tags_to_snapshot": True,
            "deletion_protection": True,
            "removal_policy": RemovalPolicy.SNAPSHOT,
            "delete_automated_backups": False,
            "backup_retention": Duration.days(c.BACKUP_RETENTION_DAYS),
            "preferred_backup_window": settings.backup_window,
            "preferred_maintenance_window": settings.maintenance_window,
            "auto_minor_version_upgrade": True,
            "monitoring_interval": Duration.seconds(c.MONITORING_INTERVAL_SECONDS),
            "enable_performance_insights": True,
            "performance_insight_encryption_key": key,
            "performance_insight_retention": rds.PerformanceInsightRetention.DEFAULT,
            "cloudwatch_logs_exports": list(c.CLOUDWATCH_LOG_EXPORTS),
        }
        self.instance: rds.DatabaseInstanceBase
        if settings.snapshot_identifier is None:
            self.instance = rds.DatabaseInstance(
                self,
                "Instance",
                credentials=rds.Credentials.from_generated_secret(
                    c.MASTER_USERNAME,
                    encryption_key=key,
                    exclude_characters=c.PASSWORD_EXCLUDE_CHARACTERS,
                ),
                database_name=c.DATABASE_NAME,
                storage_encrypted=True,
                storage_encryption_key=key,
                **common,
            )
        else:
            # RestoreDBInstanceFromDBSnapshot takes no master user name and no KMS key: both
            # come from the snapshot. The generated secret only replaces the password, so it
            # must carry the snapshot's user name (the original `postgres`).
            self.instance = rds.DatabaseInstanceFromSnapshot(
                self,
                "Instance",
                snapshot_identifier=settings.snapshot_identifier,
                credentials=rds.SnapshotCredentials.from_generated_secret(
                    c.MASTER_USERNAME,
                    encryption_key=key,
                    exclude_characters=c.PASSWORD_EXCLUDE_CHARACTERS,
                ),
                **common,
            )
            acknowledge(
                self.instance,
                "A restored instance takes its encryption and KMS key from the snapshot: "
                "RestoreDBInstanceFromDBSnapshot has no StorageEncrypted/KmsKeyId. The README "
                "requires restoring an encrypted copy (aws rds copy-db-snapshot --kms-key-id).",
                "AwsSolutions-RDS2",
                *in_compliance_packs("RDSStorageEncrypted"),
            )
        assert self.instance.secret is not None  # both credential paths generate one
        self.secret = self.instance.secret
        self._acknowledge()

    def _acknowledge(self) -> None:
        acknowledge(
            self.instance,
            "5432 is kept: the migration tooling and the application expect it, and the "
            "instance is reachable only from the application and rotation security groups "
            "inside isolated subnets, so a non-default port would add no protection.",
            "AwsSolutions-RDS11",
        )
        acknowledge(
            self.instance,
            "Recovery comes from RDS automated backups (7 days, point-in-time), retained on "
            "deletion, plus a final snapshot; an AWS Backup plan for a staging copy would "
            "duplicate them at extra cost.",
            *in_compliance_packs("RDSInBackupPlan", ("HIPAA.Security", "NIST.800.53.R5")),
        )
        acknowledge(
            self.instance,
            "Enhanced Monitoring's role must carry the AWS-maintained "
            "AmazonRDSEnhancedMonitoringRole policy; RDS documents no narrower alternative.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonRDSEnhancedMonitoringRole]",
        )
