"""Issue 11 point 2: the migration runner (cluster, task, roles, log, endpoints)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import REPO, Synthesized

pytestmark = pytest.mark.xdist_group("infra")


def _named(stack: Synthesized, type_: str, prefix: str) -> tuple[str, dict[str, Any]]:
    found = [(k, v) for k, v in stack.resources(type_).items() if k.startswith(prefix)]
    assert len(found) == 1, (type_, prefix, [k for k, _ in found])
    return found[0]


def test_cluster_has_container_insights(default_stack: Synthesized) -> None:
    default_stack.template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


def test_task_definition_family_container_platform_and_log(default_stack: Synthesized) -> None:
    _, task = default_stack.one("AWS::ECS::TaskDefinition")
    props = task["Properties"]
    assert props["Family"] == "rdsmigrate-runner"
    assert props["RequiresCompatibilities"] == ["FARGATE"]
    assert props["NetworkMode"] == "awsvpc"
    assert props["RuntimePlatform"] == {
        "CpuArchitecture": "X86_64",
        "OperatingSystemFamily": "LINUX",
    }
    (container,) = props["ContainerDefinitions"]
    assert container["Name"] == "rdsmigrate"
    assert "Environment" not in container and "Secrets" not in container
    log_group, _ = _named(default_stack, "AWS::Logs::LogGroup", "RunnerLogGroup")
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": log_group}
    assert container["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "runner"


def test_image_is_built_from_the_repository_dockerfile(default_stack: Synthesized) -> None:
    manifest = json.loads(
        (default_stack.template_path.parent / "RdsMigrationStack.assets.json").read_text()
    )
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    assert source.get("platform") == "linux/amd64"
    staged = default_stack.template_path.parent / source["directory"]
    assert (staged / "Dockerfile").read_text() == (REPO / "Dockerfile").read_text()
    # The .dockerignore keeps the context to what the image installs: no virtualenv, Node
    # modules, tests, benchmarks, git history or earlier cloud assemblies.
    staged_names = {p.name for p in staged.iterdir()}
    assert {"Dockerfile", "pyproject.toml", "src"} <= staged_names
    assert not staged_names & {".venv", "node_modules", "tests", "bench", ".git", "cdk.out"}


def test_log_group_encrypted_with_the_stack_key_and_retained(default_stack: Synthesized) -> None:
    key, key_resource = default_stack.one("AWS::KMS::Key")
    _, group = _named(default_stack, "AWS::Logs::LogGroup", "RunnerLogGroup")
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    assert group["Properties"]["RetentionInDays"] == 365
    assert group["DeletionPolicy"] == "Retain"
    principals = [s.get("Principal") for s in key_resource["Properties"]["KeyPolicy"]["Statement"]]
    assert {"Service": "logs.us-east-1.amazonaws.com"} in principals


def _statements(stack: Synthesized, prefix: str) -> list[dict[str, Any]]:
    _, policy = _named(stack, "AWS::IAM::ManagedPolicy", prefix)
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def _roles_policies(stack: Synthesized, role_prefix: str) -> list[str]:
    """Every policy attached to the role: managed ones and any inline AWS::IAM::Policy."""
    role, resource = _named(stack, "AWS::IAM::Role", role_prefix)
    assert "Policies" not in resource["Properties"]
    assert "ManagedPolicyArns" not in resource["Properties"]
    attached = [
        k
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for k, v in stack.resources(type_).items()
        if {"Ref": role} in v["Properties"].get("Roles", [])
    ]
    return attached


def test_task_role_is_least_privilege_without_star_resources(peering_stack: Synthesized) -> None:
    assert [
        p[: len("RunnerTaskPolicy")] for p in _roles_policies(peering_stack, "RunnerTaskRole")
    ] == ["RunnerTaskPolicy"]
    statements = {s["Sid"]: s for s in _statements(peering_stack, "RunnerTaskPolicy")}
    assert statements["ReadThisStacksOutputs"]["Action"] == "cloudformation:DescribeStacks"
    assert statements["ReadThisStacksOutputs"]["Resource"] == {"Ref": "AWS::StackId"}
    secrets = statements["ReadTheDatabaseCredentials"]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    attachment, _ = peering_stack.one("AWS::SecretsManager::SecretTargetAttachment")
    assert secrets["Resource"] == [
        {"Ref": attachment},
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:dev/paymentdb-AbC123",
    ]
    key, _ = peering_stack.one("AWS::KMS::Key")
    decrypt = statements["DecryptTheStagingSecret"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == {"Fn::GetAtt": [key, "Arn"]}
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    assert set(statements) == {
        "ReadThisStacksOutputs",
        "ReadTheDatabaseCredentials",
        "DecryptTheStagingSecret",
    }
    assert "*" not in json.dumps([s["Resource"] for s in statements.values()])


def test_without_a_source_secret_only_the_staging_secret(default_stack: Synthesized) -> None:
    statements = {s["Sid"]: s for s in _statements(default_stack, "RunnerTaskPolicy")}
    attachment, _ = default_stack.one("AWS::SecretsManager::SecretTargetAttachment")
    assert statements["ReadTheDatabaseCredentials"]["Resource"] == {"Ref": attachment}


def test_execution_role_has_exactly_one_star_resource_ecr_login(default_stack: Synthesized) -> None:
    """The only `*` in either role: ecr:GetAuthorizationToken, which IAM offers only on `*`
    (acknowledged as AwsSolutions-IAM5[Resource::*] on this policy, test_compliance)."""
    assert [
        p[: len("RunnerExecutionPolicy")]
        for p in _roles_policies(default_stack, "RunnerExecutionRole")
    ] == ["RunnerExecutionPolicy"]
    statements = _statements(default_stack, "RunnerExecutionPolicy")
    stars = [s for s in statements if s["Resource"] == "*"]
    assert stars == [
        {
            "Action": "ecr:GetAuthorizationToken",
            "Effect": "Allow",
            "Resource": "*",
            "Sid": "EcrLogin",
        }
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert "cdk-hnb659fds-container-assets" in json.dumps(by_sid["PullTheRunnerImage"]["Resource"])
    log_group, _ = _named(default_stack, "AWS::Logs::LogGroup", "RunnerLogGroup")
    assert by_sid["WriteTheRunnerLog"]["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    assert set(by_sid) == {"EcrLogin", "PullTheRunnerImage", "WriteTheRunnerLog"}


def test_task_definition_uses_those_two_roles(default_stack: Synthesized) -> None:
    _, task = default_stack.one("AWS::ECS::TaskDefinition")
    execution, _ = _named(default_stack, "AWS::IAM::Role", "RunnerExecutionRole")
    task_role, _ = _named(default_stack, "AWS::IAM::Role", "RunnerTaskRole")
    assert task["Properties"]["ExecutionRoleArn"] == {"Fn::GetAtt": [execution, "Arn"]}
    assert task["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": [task_role, "Arn"]}
    for role in (execution, task_role):
        trust = default_stack.json["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_interface_endpoints_in_the_isolated_subnets(default_stack: Synthesized) -> None:
    interface = [
        v["Properties"]
        for v in default_stack.resources("AWS::EC2::VPCEndpoint").values()
        if v["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert sorted(p["ServiceName"] for p in interface) == sorted(
        f"com.amazonaws.us-east-1.{s}"
        for s in ("ecr.api", "ecr.dkr", "logs", "cloudformation", "secretsmanager")
    )
    database_subnets = sorted(
        k for k in default_stack.resources("AWS::EC2::Subnet") if "DatabaseSubnet" in k
    )
    for props in interface:
        assert sorted(r["Ref"] for r in props["SubnetIds"]) == database_subnets
        assert props["PrivateDnsEnabled"] is True


def test_s3_gateway_endpoint_on_the_isolated_route_tables_for_ecr_layers(
    default_stack: Synthesized,
) -> None:
    (props,) = [
        v["Properties"]
        for v in default_stack.resources("AWS::EC2::VPCEndpoint").values()
        if v["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    tables = sorted(
        k for k in default_stack.resources("AWS::EC2::RouteTable") if "DatabaseSubnet" in k
    )
    assert sorted(r["Ref"] for r in props["RouteTableIds"]) == tables
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:GetObject"
    assert "starport-layer-bucket" in json.dumps(statement["Resource"])


def test_runner_security_group_egress_is_only_what_it_needs(default_stack: Synthesized) -> None:
    group, resource = _named(default_stack, "AWS::EC2::SecurityGroup", "RunnerSecurityGroup")
    rules = list(resource["Properties"].get("SecurityGroupEgress", []))
    rules += [
        v["Properties"]
        for v in default_stack.resources("AWS::EC2::SecurityGroupEgress").values()
        if v["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
    ]
    peers = sorted(
        (
            json.dumps(
                r.get("DestinationSecurityGroupId")
                or r.get("DestinationPrefixListId")
                or r.get("CidrIp")
            ),
            r["FromPort"],
        )
        for r in rules
    )
    assert all(r["IpProtocol"] == "tcp" and r["FromPort"] == r["ToPort"] for r in rules)
    assert [port for _, port in peers].count(443) == 3  # endpoints, Secrets Manager, S3
    assert [port for _, port in peers].count(5432) == 1  # the staging database
    assert len(peers) == 4
    assert "0.0.0.0/0" not in json.dumps(rules)
