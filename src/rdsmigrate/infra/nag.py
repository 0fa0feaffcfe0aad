"""Acknowledging cdk-nag findings, next to the resource they concern.

cdk-nag 3 reports through CDK's validation plugins; an acknowledgment id is `<pack>::<rule>`
(plus `[finding]` for rules such as IAM4/IAM5 that report several findings per resource).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

# The three compliance packs share rule names (HIPAA.Security-X, NIST.800.53.R5-X, PCI.DSS.321-X).
COMPLIANCE_PACKS = ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")


def in_compliance_packs(rule: str, packs: tuple[str, ...] = COMPLIANCE_PACKS) -> list[str]:
    return [f"{pack}-{rule}" for pack in packs]


def acknowledge(scope: IConstruct, reason: str, *rules: str) -> None:
    """Acknowledge `rules` (e.g. `AwsSolutions-RDS11`) on `scope` and everything below it."""
    Validations.of(scope).acknowledge(
        *(Acknowledgment(id=f"{rule.split('-', 1)[0]}::{rule}", reason=reason) for rule in rules)
    )
