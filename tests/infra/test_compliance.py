"""cdk-nag 3 (four packs as CDK validation plugins) and cfn-lint on every configuration."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")

PACKS = {"AwsSolutions", "PCI.DSS.321", "NIST.800.53.R5", "HIPAA.Security"}


def _nag_reports(stack: Synthesized) -> dict[str, dict[str, object]]:
    reports = {r["pluginName"]: r for r in stack.validation_report["pluginReports"]}
    assert set(reports) >= PACKS, sorted(reports)
    return reports


def test_no_unsuppressed_nag_findings_in_any_pack(any_stack: Synthesized) -> None:
    reports = _nag_reports(any_stack)
    findings = {
        pack: [v["ruleName"] for v in reports[pack]["violations"]]  # type: ignore[attr-defined]
        for pack in sorted(PACKS)
    }
    assert findings == {pack: [] for pack in sorted(PACKS)}
    assert all(reports[pack]["conclusion"] == "success" for pack in PACKS)


def test_every_suppression_names_its_rule_and_gives_a_reason(any_stack: Synthesized) -> None:
    for pack, report in _nag_reports(any_stack).items():
        for suppressed in report["suppressedViolations"]:  # type: ignore[attr-defined]
            if pack not in PACKS:
                continue
            assert suppressed["acknowledgedId"] == f"{pack}::{suppressed['ruleName']}"
            assert len(suppressed["reason"]) > 60, suppressed


def test_suppressions_are_the_reviewed_ones(default_stack: Synthesized) -> None:
    """A new finding must be fixed or acknowledged deliberately, never by a broad rule."""
    suppressed = sorted(
        (pack, s["ruleName"], s["acknowledgedAt"])
        for pack, report in _nag_reports(default_stack).items()
        if pack in PACKS
        for s in report["suppressedViolations"]  # type: ignore[attr-defined]
    )
    monitoring_policy = (
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonRDSEnhancedMonitoringRole]"
    )
    lookup = "RdsMigrationStack/AWS679f53fac002430cb0da5b7982bd2287"
    lookup_policy = "RdsMigrationStack/Network/S3PrefixList/CustomResourcePolicy"
    lambda_role = (
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]"
    )
    flow_log = "RdsMigrationStack/Network/Vpc/FlowLog"
    instance = "RdsMigrationStack/Database/Instance"
    assert suppressed == sorted(
        [
            ("AwsSolutions", monitoring_policy, instance),
            ("AwsSolutions", "AwsSolutions-RDS11", instance),
            ("HIPAA.Security", "HIPAA.Security-IAMNoInlinePolicy", flow_log),
            ("HIPAA.Security", "HIPAA.Security-RDSInBackupPlan", instance),
            ("NIST.800.53.R5", "NIST.800.53.R5-IAMNoInlinePolicy", flow_log),
            ("NIST.800.53.R5", "NIST.800.53.R5-RDSInBackupPlan", instance),
            ("PCI.DSS.321", "PCI.DSS.321-IAMNoInlinePolicy", flow_log),
            # The runner's execution role: ECR login has no resource-level permissions.
            (
                "AwsSolutions",
                "AwsSolutions-IAM5[Resource::*]",
                "RdsMigrationStack/Runner/ExecutionPolicy",
            ),
            # The deploy-time S3 prefix-list lookup (network.py): its function and policy.
            ("AwsSolutions", "AwsSolutions-IAM5[Resource::*]", lookup_policy),
            ("HIPAA.Security", "HIPAA.Security-IAMNoInlinePolicy", lookup_policy),
            ("NIST.800.53.R5", "NIST.800.53.R5-IAMNoInlinePolicy", lookup_policy),
            ("PCI.DSS.321", "PCI.DSS.321-IAMNoInlinePolicy", lookup_policy),
            ("AwsSolutions", lambda_role, lookup),
            ("HIPAA.Security", "HIPAA.Security-LambdaDLQ", lookup),
            ("HIPAA.Security", "HIPAA.Security-LambdaInsideVPC", lookup),
            ("NIST.800.53.R5", "NIST.800.53.R5-LambdaDLQ", lookup),
            ("NIST.800.53.R5", "NIST.800.53.R5-LambdaInsideVPC", lookup),
            ("PCI.DSS.321", "PCI.DSS.321-LambdaInsideVPC", lookup),
        ]
    )


def test_source_context_adds_no_suppression(
    any_stack: Synthesized, default_stack: Synthesized
) -> None:
    """Peering, transit gateway and cross-account configurations are clean without new
    acknowledgments (the snapshot restore has its own, for RDS2 / storage encryption)."""

    def rules(stack: Synthesized) -> set[tuple[str, str]]:
        return {
            (s["ruleName"], s["acknowledgedAt"])
            for pack, report in _nag_reports(stack).items()
            if pack in PACKS
            for s in report["suppressedViolations"]  # type: ignore[attr-defined]
        }

    extra = rules(any_stack) - rules(default_stack)
    assert all("RDS2" in r or "RDSStorageEncrypted" in r for r, _ in extra), extra


def test_cfn_lint_reports_no_errors_and_no_warnings(any_stack: Synthesized) -> None:
    region = any_stack.stack.settings.region
    matches = lint_file(any_stack.template_path, ManualArgs(regions=[region]))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_cfn_lint_would_report_a_warning_here() -> None:
    """The lint test above can fail: the original design's deprecated 13.7 is a warning."""
    template = {
        "Resources": {
            "Db": {
                "Type": "AWS::RDS::DBInstance",
                "Properties": {
                    "Engine": "postgres",
                    "EngineVersion": "13.7",
                    "DBInstanceClass": "db.t3.medium",
                    "AllocatedStorage": "100",
                },
            }
        }
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "t.json"
        path.write_text(json.dumps(template))
        ids = {m.rule.id for m in lint_file(path, ManualArgs(regions=["us-east-1"]))}
    assert "W3691" in ids
