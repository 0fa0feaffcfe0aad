"""Issue points 2, 4, 7 and 9: engine, parameters, instance security settings, snapshot path."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

SECURITY_SETTINGS = {
    "Engine": "postgres",
    "MultiAZ": True,
    "PubliclyAccessible": False,
    "StorageType": "gp3",
    "AllocatedStorage": "100",
    "MaxAllocatedStorage": 500,
    "EnableIAMDatabaseAuthentication": True,
    "CACertificateIdentifier": "rds-ca-rsa2048-g1",
    "CopyTagsToSnapshot": True,
    "DeletionProtection": True,
    "DeleteAutomatedBackups": False,
    "BackupRetentionPeriod": 7,
    "AutoMinorVersionUpgrade": True,
    "MonitoringInterval": 60,
    "MonitoringRoleArn": Match.any_value(),
    "EnablePerformanceInsights": True,
    "PerformanceInsightsKMSKeyId": {
        "Fn::GetAtt": [Match.string_like_regexp("^EncryptionKey"), "Arn"]
    },
    "PerformanceInsightsRetentionPeriod": 7,
    "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
    "Port": "5432",
}


def test_postgres_17_by_default_with_matching_parameter_group_family(
    default_stack: Synthesized,
) -> None:
    default_stack.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {"Engine": "postgres", "EngineVersion": "17.9", "DBInstanceClass": "db.t3.medium"},
    )
    default_stack.template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Family": "postgres17"}
    )


def test_engine_major_and_instance_class_come_from_context(env_stack: Synthesized) -> None:
    env_stack.template.has_resource_properties(
        "AWS::RDS::DBInstance", {"EngineVersion": "16.13", "DBInstanceClass": "db.r6g.large"}
    )
    env_stack.template.has_resource_properties(
        "AWS::RDS::DBParameterGroup", {"Family": "postgres16"}
    )


def test_parameters_force_tls_log_ddl_and_leave_shared_buffers_to_rds(
    default_stack: Synthesized,
) -> None:
    _, group = default_stack.one("AWS::RDS::DBParameterGroup")
    assert group["Properties"]["Parameters"] == {
        "rds.force_ssl": "1",
        "max_connections": "200",
        "log_statement": "ddl",
        "log_min_duration_statement": "1000",
    }


def test_new_instance_has_every_security_setting_and_the_retained_key(
    default_stack: Synthesized,
) -> None:
    default_stack.template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": {
                **SECURITY_SETTINGS,
                "StorageEncrypted": True,
                "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("^EncryptionKey"), "Arn"]},
                "DBName": "paymentdb",
                "MasterUsername": "postgres",
            },
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
        },
    )
    default_stack.template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_max_allocated_storage_exceeds_allocated(any_stack: Synthesized) -> None:
    _, instance = any_stack.one("AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert int(props["MaxAllocatedStorage"]) > int(props["AllocatedStorage"])


def test_snapshot_restore_keeps_every_setting(snapshot_stack: Synthesized) -> None:
    snapshot_stack.template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": {
                **SECURITY_SETTINGS,
                "DBSnapshotIdentifier": "dev-paymentdb-final-encrypted",
                "EngineVersion": "17.9",
                "DBParameterGroupName": Match.any_value(),
                "DBSubnetGroupName": Match.any_value(),
                "PreferredBackupWindow": "08:00-09:00",
                "PreferredMaintenanceWindow": "sun:09:30-sun:10:30",
            },
            "DeletionPolicy": "Snapshot",
        },
    )
    _, instance = snapshot_stack.one("AWS::RDS::DBInstance")
    props = instance["Properties"]
    # RestoreDBInstanceFromDBSnapshot takes neither; they come from the snapshot.
    for inherited in ("MasterUsername", "DBName", "StorageEncrypted", "KmsKeyId"):
        assert inherited not in props
    # The generated secret replaces the password of the restored master user.
    assert "{{resolve:secretsmanager:" in str(props["MasterUserPassword"])
    snapshot_stack.template.resource_count_is("AWS::SecretsManager::RotationSchedule", 1)
