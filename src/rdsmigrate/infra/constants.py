"""Names and defaults of the staging stack, in one place.

Context keys keep the spelling of the original design (`environmentSuffix`, `stagingVpcCidr`,
`appSubnetCidrs`, `region`, `account`) so existing `cdk.json` files and `-c` flags keep working.
"""

from typing import Final

STACK_ID: Final = "RdsMigrationStack"
STACK_DESCRIPTION: Final = (
    "Staging RDS PostgreSQL for the payments database migration: isolated VPC, KMS, "
    "rotated credentials, alarms"
)

# Context keys (the camelCase names users pass with `cdk -c key=value` or put in cdk.json).
CTX_ENVIRONMENT_SUFFIX: Final = "environmentSuffix"
CTX_VPC_CIDR: Final = "stagingVpcCidr"
CTX_APP_SUBNET_CIDRS: Final = "appSubnetCidrs"
CTX_AVAILABILITY_ZONES: Final = "availabilityZones"
CTX_REGION: Final = "region"
CTX_ACCOUNT: Final = "account"
CTX_ALARM_EMAIL: Final = "alarmEmail"
CTX_ENGINE_VERSION: Final = "engineVersion"
CTX_INSTANCE_CLASS: Final = "instanceClass"
CTX_BACKUP_WINDOW: Final = "backupWindow"
CTX_MAINTENANCE_WINDOW: Final = "maintenanceWindow"
CTX_SNAPSHOT_IDENTIFIER: Final = "snapshotIdentifier"
# The development (source) network, issue 11. All-or-nothing: see settings.SourceNetwork.
CTX_SOURCE_VPC_ID: Final = "sourceVpcId"
CTX_SOURCE_VPC_CIDR: Final = "sourceVpcCidr"
CTX_SOURCE_ROUTE_TABLE_IDS: Final = "sourceRouteTableIds"
CTX_SOURCE_SECURITY_GROUP_ID: Final = "sourceSecurityGroupId"
CTX_SOURCE_DB_INSTANCE_ID: Final = "sourceDbInstanceId"
CTX_SOURCE_PORT: Final = "sourcePort"
CTX_SOURCE_ACCOUNT: Final = "sourceAccount"
CTX_SOURCE_PEER_ROLE_ARN: Final = "sourcePeerRoleArn"
CTX_SOURCE_TRANSIT_GATEWAY_ID: Final = "sourceTransitGatewayId"
CTX_SOURCE_SECRET_ARN: Final = "sourceSecretArn"
# Unknown context keys with these prefixes are refused rather than ignored: a misspelt
# `sourceVpcID` would otherwise deploy a stack with no path to the source at all.
OWN_CONTEXT_PREFIXES: Final = ("source", "staging")

DEFAULT_ENVIRONMENT_SUFFIX: Final = "staging-001"
DEFAULT_VPC_CIDR: Final = "10.1.0.0/16"
DEFAULT_APP_SUBNET_CIDRS: Final = ("10.1.10.0/24", "10.1.11.0/24", "10.1.12.0/24")
DEFAULT_REGION: Final = "us-east-1"
# Used only when no account is given (no AZ lookup possible) and the region is the default one.
DEFAULT_AVAILABILITY_ZONES: Final = ("us-east-1a", "us-east-1b", "us-east-1c")
AVAILABILITY_ZONE_COUNT: Final = 3
DEFAULT_ENGINE_VERSION: Final = "17"
# A bare major resolves to a pinned minor: RDS lists only full versions as creatable (cfn-lint
# W3691 flags "17"), and with auto minor upgrades on, the pin is only the starting point.
DEFAULT_MINOR_FOR_MAJOR: Final = {
    "14": "14.22",
    "15": "15.17",
    "16": "16.13",
    "17": "17.9",
    "18": "18.3",
}
DEFAULT_INSTANCE_CLASS: Final = "db.t3.medium"
# "03:00-05:00 US Eastern" daily backups and "Sunday 03:00-05:00 US Eastern" maintenance,
# converted to UTC (RDS windows are UTC and do not follow daylight saving time) and pulled
# apart so they never overlap. See the README section "Staging environment (AWS CDK)".
DEFAULT_BACKUP_WINDOW: Final = "08:00-09:00"
DEFAULT_MAINTENANCE_WINDOW: Final = "sun:09:30-sun:10:30"
MIN_WINDOW_MINUTES: Final = 30

# Database.
DATABASE_NAME: Final = "paymentdb"
MASTER_USERNAME: Final = "postgres"
DATABASE_PORT: Final = 5432
ALLOCATED_STORAGE_GIB: Final = 100
MAX_ALLOCATED_STORAGE_GIB: Final = 500
BACKUP_RETENTION_DAYS: Final = 7
# Enhanced Monitoring accepts only 0, 1, 5, 10, 15, 30 or 60 seconds.
MONITORING_INTERVAL_SECONDS: Final = 60
CA_CERTIFICATE: Final = "rds-ca-rsa2048-g1"
CLOUDWATCH_LOG_EXPORTS: Final = ("postgresql", "upgrade")
MAX_CONNECTIONS: Final = 200
LOG_MIN_DURATION_STATEMENT_MS: Final = 1000
# Characters the rotation Lambda and libpq connection strings handle badly.
PASSWORD_EXCLUDE_CHARACTERS: Final = "/@\" '\\:;%+~`#$&*()|[]{}<>?!"
ROTATION_DAYS: Final = 30
FLOW_LOG_RETENTION_DAYS: Final = 365
DEFAULT_SOURCE_PORT: Final = 5432
HTTPS_PORT: Final = 443

# The migration runner (issue 11); names agreed with `rdsmigrate aws run` (notes/interfaces.md).
RUNNER_TASK_FAMILY: Final = "rdsmigrate-runner"
RUNNER_CONTAINER_NAME: Final = "rdsmigrate"
RUNNER_LOG_STREAM_PREFIX: Final = "runner"
# pg_dump/pg_restore and the copy workers run in the task; 1 vCPU / 2 GiB is the smallest
# Fargate size that keeps a parallel copy from swapping (the copy is bound by the servers).
RUNNER_CPU: Final = 1024
RUNNER_MEMORY_MIB: Final = 2048

# Instance families RDS for PostgreSQL 14-18 offers; t2 is gone from PostgreSQL 13+.
INSTANCE_FAMILIES: Final = (
    "t3",
    "t4g",
    "m5",
    "m5d",
    "m6g",
    "m6gd",
    "m6i",
    "m6id",
    "m6idn",
    "m6in",
    "m7g",
    "m7i",
    "m8g",
    "r5",
    "r5b",
    "r5d",
    "r6g",
    "r6gd",
    "r6i",
    "r6id",
    "r6idn",
    "r6in",
    "r7g",
    "r7i",
    "r8g",
    "x2g",
    "x2idn",
    "x2iedn",
)
INSTANCE_SIZES: Final = (
    "micro",
    "small",
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
    "24xlarge",
    "32xlarge",
    "48xlarge",
)
# Performance Insights is not available on these classes; the stack requires it.
NO_PERFORMANCE_INSIGHTS: Final = ("t3.micro", "t3.small", "t4g.micro", "t4g.small")

# Alarms.
CPU_ALARM_PERCENT: Final = 80
FREE_STORAGE_ALARM_BYTES: Final = 10 * 1024**3
CONNECTIONS_ALARM_RATIO: Final = 0.9
FREEABLE_MEMORY_ALARM_BYTES: Final = 256 * 1024**2
# WAL kept for a stalled logical replication slot (the migration's CDC) shows up here first.
TRANSACTION_LOGS_ALARM_BYTES: Final = 10 * 1024**3
ALARM_PERIOD_MINUTES: Final = 5
# The development instance holds the slot: WAL it keeps for staging and how far behind it is.
SOURCE_SLOT_LAG_ALARM_BYTES: Final = 5 * 1024**3

TAGS: Final = {"Environment": "staging", "CostCenter": "engineering", "ManagedBy": "CDK"}
