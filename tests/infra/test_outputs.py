"""Issue point 10: the original outputs plus the alarm topic, exported with the suffix."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

NAMES = [
    "DatabaseEndpoint",
    "DatabasePort",
    "DatabaseName",
    "DatabaseSecretArn",
    "DatabaseSecurityGroupId",
    "VpcId",
    "AlarmTopicArn",
]


def test_outputs_exported_with_the_default_suffix(default_stack: Synthesized) -> None:
    outputs = default_stack.json["Outputs"]
    assert sorted(outputs) == sorted(NAMES)
    for name in NAMES:
        assert outputs[name]["Export"] == {"Name": f"{name}-staging-001"}
    assert outputs["DatabaseName"]["Value"] == "paymentdb"


def test_export_names_follow_the_suffix_and_are_unique(env_stack: Synthesized) -> None:
    exports = [o["Export"]["Name"] for o in env_stack.json["Outputs"].values()]
    assert sorted(exports) == sorted(f"{name}-qa-7" for name in NAMES)
    assert len(set(exports)) == len(exports)


def test_alarm_names_and_tags_carry_the_suffix(env_stack: Synthesized) -> None:
    for alarm in env_stack.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmName"].endswith("-qa-7")
    env_stack.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Tags": [
                {"Key": "CostCenter", "Value": "engineering"},
                {"Key": "Environment", "Value": "staging"},
                {"Key": "EnvironmentSuffix", "Value": "qa-7"},
                {"Key": "ManagedBy", "Value": "CDK"},
            ]
        },
    )
