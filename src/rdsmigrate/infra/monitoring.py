"""Alarms on the staging database, on the development (source) instance, and their topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from rdsmigrate.infra import constants as c

_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


@dataclass(frozen=True)
class _AlarmSpec:
    id_: str
    name: str
    metric: str
    statistic: str
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    evaluation_periods: int
    description: str


class Monitoring(Construct):
    """Every alarm notifies the topic on ALARM and on OK; the topic is encrypted with the
    stack's key (whose policy lets CloudWatch use it) and accepts only TLS publishers."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        instance: rds.DatabaseInstanceBase,
        key: kms.IKey,
        environment_suffix: str,
        alarm_email: str | None,
        connections_threshold: int,
        source_instance_id: str | None = None,
        source_account: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"Staging RDS alarms ({environment_suffix})",
            master_key=key,
            enforce_ssl=True,
        )
        if alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        specs = [
            _AlarmSpec(
                "CpuAlarm",
                "rds-cpu-high",
                "CPUUtilization",
                "Average",
                c.CPU_ALARM_PERCENT,
                _ABOVE,
                2,
                f"Database CPU above {c.CPU_ALARM_PERCENT}% for 10 minutes",
            ),
            _AlarmSpec(
                "StorageAlarm",
                "rds-storage-low",
                "FreeStorageSpace",
                "Minimum",
                c.FREE_STORAGE_ALARM_BYTES,
                _BELOW,
                1,
                "Free storage below 10 GiB (autoscaling may have hit its maximum)",
            ),
            _AlarmSpec(
                "ConnectionsAlarm",
                "rds-connections-high",
                "DatabaseConnections",
                "Maximum",
                connections_threshold,
                _ABOVE,
                1,
                f"Connections above {connections_threshold} "
                f"({c.CONNECTIONS_ALARM_RATIO:.0%} of max_connections={c.MAX_CONNECTIONS})",
            ),
            _AlarmSpec(
                "FreeableMemoryAlarm",
                "rds-memory-low",
                "FreeableMemory",
                "Minimum",
                c.FREEABLE_MEMORY_ALARM_BYTES,
                _BELOW,
                2,
                "Freeable memory below 256 MiB: the instance is about to swap",
            ),
            _AlarmSpec(
                "TransactionLogsAlarm",
                "rds-wal-disk-high",
                "TransactionLogsDiskUsage",
                "Maximum",
                c.TRANSACTION_LOGS_ALARM_BYTES,
                _ABOVE,
                1,
                "WAL on disk above 10 GiB: a replication slot is probably stalled",
            ),
        ]
        self._action = cloudwatch_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for spec in specs:
            self._alarm(
                spec,
                environment_suffix,
                instance.metric(
                    spec.metric,
                    statistic=spec.statistic,
                    period=Duration.minutes(c.ALARM_PERIOD_MINUTES),
                ),
            )
        if source_instance_id is not None:
            for spec in _source_specs(source_instance_id):
                metric = cloudwatch.Metric(
                    namespace="AWS/RDS",
                    metric_name=spec.metric,
                    dimensions_map={"DBInstanceIdentifier": source_instance_id},
                    statistic=spec.statistic,
                    period=Duration.minutes(c.ALARM_PERIOD_MINUTES),
                    # Another account's metrics need CloudWatch cross-account observability
                    # (this account as a monitoring account of the source's); see the README.
                    account=source_account,
                )
                self._alarm(spec, environment_suffix, metric)

    def _alarm(self, spec: _AlarmSpec, environment_suffix: str, metric: cloudwatch.IMetric) -> None:
        alarm = cloudwatch.Alarm(
            self,
            spec.id_,
            alarm_name=f"{spec.name}-{environment_suffix}",
            alarm_description=spec.description,
            metric=metric,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            # Kept from the original design: no page while the instance is being created or
            # restored and has not published its first datapoints yet.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)


def _source_specs(instance_id: str) -> list[_AlarmSpec]:
    """The development instance holds the replication slot staging subscribes through, so
    that is where WAL piles up while the subscription is stalled or the migration paused."""
    return [
        _AlarmSpec(
            "SourceTransactionLogsAlarm",
            "source-wal-disk-high",
            "TransactionLogsDiskUsage",
            "Maximum",
            c.TRANSACTION_LOGS_ALARM_BYTES,
            _ABOVE,
            1,
            f"WAL retained on the development instance {instance_id} above 10 GiB: the "
            "staging subscription's slot is probably stalled",
        ),
        _AlarmSpec(
            "SourceSlotLagAlarm",
            "source-slot-lag-high",
            "OldestReplicationSlotLag",
            "Maximum",
            c.SOURCE_SLOT_LAG_ALARM_BYTES,
            _ABOVE,
            1,
            f"Oldest replication slot on {instance_id} more than 5 GiB behind",
        ),
        _AlarmSpec(
            "SourceStorageAlarm",
            "source-storage-low",
            "FreeStorageSpace",
            "Minimum",
            c.FREE_STORAGE_ALARM_BYTES,
            _BELOW,
            1,
            f"Free storage on the development instance {instance_id} below 10 GiB",
        ),
    ]
