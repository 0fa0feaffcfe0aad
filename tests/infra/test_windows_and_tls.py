"""Issue points 3 and 4, checked on the synthesized template rather than on the settings."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rdsmigrate.infra.settings import windows_overlap
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.xdist_group("infra")


def template_problems(template: dict[str, Any]) -> list[str]:
    """What RDS would reject or what breaks the TLS promise, read from the template alone."""
    resources = template["Resources"]
    problems: list[str] = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::RDS::DBInstance":
            continue
        props = resource["Properties"]
        backup, maintenance = props["PreferredBackupWindow"], props["PreferredMaintenanceWindow"]
        if windows_overlap(backup, maintenance):
            problems.append(f"{name}: backup {backup} overlaps maintenance {maintenance}")
        group = resources[props["DBParameterGroupName"]["Ref"]]["Properties"]["Parameters"]
        if str(group.get("rds.force_ssl")) != "1":
            problems.append(f"{name}: rds.force_ssl is {group.get('rds.force_ssl')!r}, not 1")
    return problems


def test_windows_do_not_overlap_and_tls_is_enforced(any_stack: Synthesized) -> None:
    assert template_problems(any_stack.json) == []


def test_default_windows_are_the_converted_us_eastern_ones(default_stack: Synthesized) -> None:
    default_stack.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "PreferredBackupWindow": "08:00-09:00",
            "PreferredMaintenanceWindow": "sun:09:30-sun:10:30",
        },
    )


def _instance(template: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in template["Resources"].values() if r["Type"] == "AWS::RDS::DBInstance")


def test_the_check_catches_the_original_designs_overlapping_windows(
    default_stack: Synthesized,
) -> None:
    broken = copy.deepcopy(default_stack.json)
    # The original design: "03:00-05:00" daily and "sun:03:00-sun:05:00" weekly.
    _instance(broken)["Properties"].update(
        PreferredBackupWindow="03:00-05:00", PreferredMaintenanceWindow="sun:03:00-sun:05:00"
    )
    assert template_problems(broken) == [
        next(n for n, r in broken["Resources"].items() if r["Type"] == "AWS::RDS::DBInstance")
        + ": backup 03:00-05:00 overlaps maintenance sun:03:00-sun:05:00"
    ]


@pytest.mark.parametrize("force_ssl", [None, "0"])
def test_the_check_catches_tls_not_enforced(
    default_stack: Synthesized, force_ssl: str | None
) -> None:
    broken = copy.deepcopy(default_stack.json)
    group_ref = _instance(broken)["Properties"]["DBParameterGroupName"]["Ref"]
    parameters = broken["Resources"][group_ref]["Properties"]["Parameters"]
    if force_ssl is None:
        del parameters["rds.force_ssl"]
    else:
        parameters["rds.force_ssl"] = force_ssl
    assert len(template_problems(broken)) == 1
    assert "rds.force_ssl" in template_problems(broken)[0]
