"""Issue point 6: alarms that notify an encrypted topic, with an optional e-mail subscription."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

GIB = 1024**3


def _alarms(stack: Synthesized) -> dict[str, dict[str, object]]:
    return {
        str(a["Properties"]["MetricName"]): a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
    }


def test_the_five_staging_alarms_and_their_thresholds(default_stack: Synthesized) -> None:
    alarms = _alarms(default_stack)
    expected = {
        "CPUUtilization": ("GreaterThanThreshold", 80),
        "FreeStorageSpace": ("LessThanThreshold", 10 * GIB),
        "DatabaseConnections": ("GreaterThanThreshold", 180),  # 90 % of max_connections=200
        "FreeableMemory": ("LessThanThreshold", 256 * 1024**2),
        "TransactionLogsDiskUsage": ("GreaterThanThreshold", 10 * GIB),
    }
    assert {
        name: (a["ComparisonOperator"], a["Threshold"]) for name, a in alarms.items()
    } == expected
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/RDS"
        assert alarm["Dimensions"][0]["Name"] == "DBInstanceIdentifier"  # type: ignore[index]


def test_every_alarm_notifies_the_topic(any_stack: Synthesized) -> None:
    topic, _ = any_stack.one("AWS::SNS::Topic")
    for alarm in any_stack.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic}]


def test_topic_is_encrypted_with_the_key_cloudwatch_may_use(default_stack: Synthesized) -> None:
    key, key_resource = default_stack.one("AWS::KMS::Key")
    default_stack.template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]}}
    )
    statements = key_resource["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_alarm_email_subscribes_only_when_given(
    default_stack: Synthesized, env_stack: Synthesized
) -> None:
    default_stack.template.resource_count_is("AWS::SNS::Subscription", 0)
    env_stack.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "dba-oncall@example.com"}
    )


def _source_alarms(stack: Synthesized) -> dict[str, dict[str, object]]:
    return {
        str(a["Properties"]["AlarmName"]): a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
        if str(a["Properties"]["AlarmName"]).startswith("source-")
    }


def test_the_development_instance_gets_wal_slot_and_storage_alarms(
    peering_stack: Synthesized,
) -> None:
    """The slot lives on the development instance: its WAL, lag and storage are watched there."""
    alarms = _source_alarms(peering_stack)
    assert {
        a["MetricName"]: (a["ComparisonOperator"], a["Threshold"]) for a in alarms.values()
    } == {
        "TransactionLogsDiskUsage": ("GreaterThanThreshold", 10 * GIB),
        "OldestReplicationSlotLag": ("GreaterThanThreshold", 5 * GIB),
        "FreeStorageSpace": ("LessThanThreshold", 10 * GIB),
    }
    topic, _ = peering_stack.one("AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/RDS"
        assert alarm["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": "dev-paymentdb"}]
        assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_no_source_alarms_without_source_context(default_stack: Synthesized) -> None:
    assert _source_alarms(default_stack) == {}


def test_another_accounts_instance_is_watched_in_that_account(env_stack: Synthesized) -> None:
    alarms = _source_alarms(env_stack)
    assert len(alarms) == 3
    for alarm in alarms.values():
        (metric,) = alarm["Metrics"]  # type: ignore[misc]
        assert metric["AccountId"] == "210987654321"
        assert metric["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "DBInstanceIdentifier", "Value": "dev-paymentdb"}
        ]
