"""``rdsmigrate aws run``: the staging stack's runner task started with the user's command, its
log streamed, its exit code returned; against moto's CloudFormation, ECS, EC2 and CloudWatch Logs.

moto runs no container, so the tests play its part: between two looks of ``aws run`` (the
:data:`rdsmigrate.remote.run.pause` seam, which is ``time.sleep`` otherwise) they write the log
lines a container would, then stop the task through ECS's own StopTask. moto's ECS reports every
container's exit code as 0 and offers no API to set one, so the exit code a stopped container
would have is set on moto's backend model of the task (``_stop``): the one place the tests reach
past the AWS APIs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager
from typer.testing import CliRunner, Result

from rdsmigrate.cli import app
from rdsmigrate.errors import UserError
from rdsmigrate.remote import run as remote
from tests.fakeaws import fake_credentials

REGION = "eu-west-1"
STACK = "RdsMigrationStack"
CONTAINER = "rdsmigrate"
LOG_GROUP = "/rdsmigrate/runner"
COMMAND = ["status", "--source", "secret:arn:aws:secretsmanager:eu-west-1:123456789012:secret:src",
           "--target", f"stack:{STACK}"]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_credentials(monkeypatch, REGION)
    # A task stays RUNNING until StopTask (moto's default jumps to STOPPED at the first look).
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    monkeypatch.setattr(remote, "pause", _no_waiting)
    try:
        with mock_aws():
            yield
    finally:
        state_manager.unset_transition("ecs::task")


def _no_waiting(seconds: float) -> None:
    raise AssertionError("aws run waited where the test expected it not to")


@dataclass
class Deployed:
    outputs: dict[str, str]
    cluster: str


def _deploy(*, outputs: tuple[str, ...] = remote.OUTPUTS, cluster_arn: str | None = None
            ) -> Deployed:
    """The runner's resources as the staging stack makes them, and a stack naming them in its
    outputs (moto's CloudFormation cannot create an ECS task definition with awslogs: the
    resources are made directly and the stack only reports them)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    # As the CDK makes a VPC (moto's awsvpc tasks need it, for their interface's DNS name).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24")["Subnet"]["SubnetId"]
               for i in (1, 2)]
    sg = ec2.create_security_group(GroupName="runner", Description="runner",
                                   VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = ecs.create_cluster(clusterName="rdsmigrate-runner")["cluster"]["clusterArn"]
    task_definition = ecs.register_task_definition(
        family="rdsmigrate-runner", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="1024", memory="2048",
        containerDefinitions=[{
            "name": CONTAINER, "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/runner:1",
            # moto's RunTask needs the container's own cpu and memory (Fargate does not).
            "essential": True, "cpu": 1024, "memory": 2048,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": LOG_GROUP, "awslogs-region": REGION,
                "awslogs-stream-prefix": remote.LOG_STREAM_PREFIX}}}],
    )["taskDefinition"]["taskDefinitionArn"]
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName=LOG_GROUP)
    values = {"RunnerClusterArn": cluster_arn or cluster, "RunnerTaskDefinitionArn": task_definition,
              "RunnerContainerName": CONTAINER, "RunnerSubnetIds": ",".join(subnets),
              "RunnerSecurityGroupId": sg, "RunnerLogGroupName": LOG_GROUP,
              "DatabaseEndpoint": "db.example", "DatabasePort": "5432"}
    template = {"Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in values.items()
                            if k in outputs or k.startswith("Database")}}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(template))
    return Deployed(outputs=values, cluster=cluster)


def _tasks(cluster: str) -> list[str]:
    return list(boto3.client("ecs", region_name=REGION).list_tasks(cluster=cluster)["taskArns"])


def _recorded(cluster: str) -> Any:
    """moto's record of the one task started on ``cluster``."""
    (arn,) = _tasks(cluster)
    return ecs_backends[DEFAULT_ACCOUNT_ID][REGION].tasks[cluster.rsplit("/", 1)[-1]][arn]


def _write_log(task_arn: str, *lines: str) -> None:
    logs = boto3.client("logs", region_name=REGION)
    stream = f"{remote.LOG_STREAM_PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"
    existing = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=stream)
    if not existing["logStreams"]:
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream)["events"]
    # CloudWatch (moto too) drops events more than 2 hours from now.
    start = int(time.time() * 1000) + len(events)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[
        {"timestamp": start + i, "message": line} for i, line in enumerate(lines)])


def _stop(cluster: str, exit_code: int | None, reason: str) -> None:
    task = _recorded(cluster)
    # moto has no API for a container's exit code: set it on moto's model of the task.
    task.containers[0].exitCode = exit_code
    boto3.client("ecs", region_name=REGION).stop_task(cluster=cluster, task=task.task_arn,
                                                      reason=reason)


@dataclass
class Container:
    """What the task's container does at each of ``aws run``'s pauses."""

    cluster: str
    steps: list[Callable[[str], None]]
    pauses: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        (task_arn,) = _tasks(self.cluster)
        assert self.steps, "aws run kept waiting after the task had stopped"
        self.steps.pop(0)(task_arn)


def _play(monkeypatch: pytest.MonkeyPatch, cluster: str,
          *steps: Callable[[str], None]) -> Container:
    container = Container(cluster, list(steps))
    monkeypatch.setattr(remote, "pause", container)
    return container


def test_starts_the_task_streams_its_log_in_order_and_exits_with_its_code(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = _deploy()
    container = _play(
        monkeypatch, deployed.cluster,
        lambda arn: None,  # provisioning: no log stream yet
        lambda arn: _write_log(arn, "status: streaming", "lag 0 bytes"),
        lambda arn: None,  # running, nothing new
        lambda arn: (_write_log(arn, "ddl drift: none"),
                     _stop(deployed.cluster, 3, "Essential container in task exited")),
    )
    result = _cli("aws", "run", "--", *COMMAND)
    assert result.exit_code == 3, result.output
    assert result.stdout == "status: streaming\nlag 0 bytes\nddl drift: none\n"
    assert "exited 3" in result.stderr
    assert container.pauses and not container.steps
    task = _recorded(deployed.cluster)
    assert task.launch_type == "FARGATE"
    assert task.started_by == remote.STARTED_BY
    assert task.overrides == {"containerOverrides": [{"name": CONTAINER, "command": COMMAND}]}
    assert task.task_definition_arn == deployed.outputs["RunnerTaskDefinitionArn"]
    assert task.network_configuration == {"awsvpcConfiguration": {
        "subnets": deployed.outputs["RunnerSubnetIds"].split(","),
        "securityGroups": [deployed.outputs["RunnerSecurityGroupId"]],
        "assignPublicIp": "DISABLED"}}


def test_a_successful_step_exits_0_and_options_after_the_command_are_the_commands(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = _deploy()
    _play(monkeypatch, deployed.cluster,
          lambda arn: (_write_log(arn, "done"), _stop(deployed.cluster, 0, "exited")))
    # No '--': the command starts at its first word, so --region there is sync's, not ours.
    result = _cli("aws", "run", "--stack", STACK, "sync", "--region", "x", "--no-wait")
    assert result.exit_code == 0, result.output
    assert result.stdout == "done\n"
    assert _recorded(deployed.cluster).overrides["containerOverrides"][0]["command"] == [
        "sync", "--region", "x", "--no-wait"]


def test_a_task_that_never_ran_its_container_exits_2_with_the_reason_and_a_fix(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = _deploy()
    _play(monkeypatch, deployed.cluster, lambda arn: _stop(
        deployed.cluster, None, "CannotPullContainerError: pull image manifest has been retried "
        "5 time(s): failed to resolve ref"))
    result = _cli("aws", "run", "--", *COMMAND)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()[-1:]
    assert "stopped before rdsmigrate ran" in line and "CannotPullContainerError" in line
    assert "ECR" in line and "cdk deploy" in line
    assert result.stdout == ""


def test_no_wait_prints_the_task_and_how_to_follow_it(fake_aws: None) -> None:
    deployed = _deploy()
    result = _cli("aws", "run", "--no-wait", "--", *COMMAND)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == _tasks(deployed.cluster)[0]
    assert f"aws logs tail {LOG_GROUP}" in result.stderr


def test_interrupted_the_task_keeps_running_and_the_message_says_how_to_stop_it(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = _deploy()

    def ctrl_c(arn: str) -> None:
        raise KeyboardInterrupt

    _play(monkeypatch, deployed.cluster, ctrl_c)
    result = _cli("aws", "run", "--", *COMMAND)
    assert result.exit_code == 130, result.output
    assert "keeps running" in result.stderr and "aws ecs stop-task" in result.stderr
    assert _recorded(deployed.cluster).last_status == "RUNNING"


@pytest.mark.parametrize("password_arg", [
    "postgresql://postgres:hunter2secret@db.internal:5432/app",
    "host=db.internal user=postgres password=hunter2secret dbname=app",
])
def test_a_password_in_the_command_is_refused_before_anything_starts(
    fake_aws: None, password_arg: str,
) -> None:
    deployed = _deploy()
    result = _cli("aws", "run", "--", "copy", "--source", password_arg, "--target",
                  f"stack:{STACK}")
    assert result.exit_code == 2
    assert "hunter2secret" not in result.output
    assert "argument 3 (after --source) holds a password" in result.stderr
    assert "secret:ARN" in result.stderr
    assert _tasks(deployed.cluster) == []


@pytest.mark.parametrize(("setup", "args", "expected"), [
    ("none", ["--", *COMMAND], f"the stack {STACK} does not exist in {REGION}"),
    ("without-runner", ["--", *COMMAND],
     "has no output RunnerClusterArn, RunnerTaskDefinitionArn, RunnerContainerName, "
     "RunnerSubnetIds, RunnerSecurityGroupId, RunnerLogGroupName: was it deployed without the "
     "migration runner?"),
    ("stale-cluster", ["--", *COMMAND],
      "AWS refused to start the runner task arn:aws:ecs:eu-west-1:123456789012:task-definition/"
     "rdsmigrate-runner:1: ClusterNotFoundException"),
    ("full", [], "no command to run: put the rdsmigrate command after '--'"),
])
def test_stack_and_task_errors_are_one_line_with_the_fix(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch, setup: str, args: list[str], expected: str,
) -> None:
    if setup == "without-runner":
        _deploy(outputs=())
    elif setup == "stale-cluster":
        _deploy(cluster_arn=f"arn:aws:ecs:{REGION}:{DEFAULT_ACCOUNT_ID}:cluster/deleted")
    elif setup == "full":
        _deploy()
    result = _cli("aws", "run", *args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: aws run: ") and expected in line, line


def test_no_region_and_no_credentials_are_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_region = _cli("aws", "run", "--", *COMMAND)
    assert no_region.exit_code == 2
    assert no_region.stderr.strip() == ("error: aws run: no AWS region: pass --region REGION or "
                                        "set AWS_REGION")
    no_credentials = _cli("aws", "run", "--region", REGION, "--", *COMMAND)
    assert no_credentials.exit_code == 2
    assert no_credentials.stderr.startswith(
        f"error: aws run: no AWS credentials to read the stack {STACK}: configure a profile")


class _Refusing:
    """Stands in for the AWS clients where moto cannot answer as ECS does: moto's RunTask never
    returns a ``failures`` list (real ECS does, e.g. for a capacity or a missing image)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply

    def call(self, service: str, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        assert (service, operation) == ("ecs", "run_task")
        return self.reply


def test_runtask_failures_are_named_in_one_line() -> None:
    runner = remote.Runner("arn:cluster", "arn:taskdef", CONTAINER, ("subnet-1",), "sg-1",
                           LOG_GROUP)
    reply = {"tasks": [], "failures": [{"arn": "arn:taskdef", "reason": "RESOURCE:ENI",
                                        "detail": "no free ENI in subnet-1"}]}
    with pytest.raises(UserError, match=r"ECS did not start the task: RESOURCE:ENI: no free ENI "
                                        r"in subnet-1 \(arn:taskdef\)"):
        remote._start(_Refusing(reply), runner, COMMAND)  # type: ignore[arg-type]
