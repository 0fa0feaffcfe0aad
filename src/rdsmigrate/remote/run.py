"""``rdsmigrate aws run -- COMMAND...``: one rdsmigrate command as a Fargate task in the staging
VPC, its log streamed to this terminal, its exit code returned.

The task definition, cluster, subnets, security group and log group come from the staging
stack's outputs (the ``Runner*`` keys, see /README.md), so nothing is copied by hand. The command
reaches AWS as RunTask's container override, which CloudTrail records and ``DescribeTasks``
shows to anyone allowed to list tasks: it must hold no password, so a connection string with one
is refused and the task reads credentials itself (``secret:ARN``, ``stack:NAME``).

Guarantees: exit code of the container when it ran; 2 with the stop reason and a fix when the
task stopped without running it (image pull, secrets or network failures). Does not stop the
task when this command is interrupted: the step keeps running in AWS and the message says how
to stop it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from rdsmigrate.db.aws import Clients
from rdsmigrate.db.connect import redact_secrets
from rdsmigrate.errors import EXIT_OK, Interrupted, UserError
from rdsmigrate.remote.logs import LogFollower

DEFAULT_STACK = "RdsMigrationStack"
OUTPUTS = ("RunnerClusterArn", "RunnerTaskDefinitionArn", "RunnerContainerName",
           "RunnerSubnetIds", "RunnerSecurityGroupId", "RunnerLogGroupName")
# The task definition's awslogs stream prefix: a task's stream is PREFIX/CONTAINER/TASK_ID.
LOG_STREAM_PREFIX = "runner"
STARTED_BY = "rdsmigrate-aws-run"
WHO = "aws run"
NEEDS = ("cloudformation:DescribeStacks on the stack, ecs:RunTask on the task definition, "
         "iam:PassRole on its task and execution roles, ecs:DescribeTasks and "
         "logs:GetLogEvents on the runner's log group")

# How long between two looks at the task and its log. A seam for the tests, which play the
# container's part between two looks (moto runs no container).
pause: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Runner:
    """The staging stack's migration runner, as its outputs describe it."""

    cluster: str
    task_definition: str
    container: str
    subnets: tuple[str, ...]
    security_group: str
    log_group: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> Runner:
        return cls(
            cluster=outputs["RunnerClusterArn"],
            task_definition=outputs["RunnerTaskDefinitionArn"],
            container=outputs["RunnerContainerName"],
            subnets=tuple(s.strip() for s in outputs["RunnerSubnetIds"].split(",") if s.strip()),
            security_group=outputs["RunnerSecurityGroupId"],
            log_group=outputs["RunnerLogGroupName"],
        )

    def log_stream(self, task_arn: str) -> str:
        return f"{LOG_STREAM_PREFIX}/{self.container}/{task_arn.rsplit('/', 1)[-1]}"


@dataclass(frozen=True)
class RunOptions:
    stack: str = DEFAULT_STACK
    region: str | None = None
    wait: bool = True
    poll_s: float = 3.0


def check_command(args: list[str]) -> None:
    """Refuse an empty command and any argument holding a password."""
    if not args:
        raise UserError(f"{WHO}: no command to run: put the rdsmigrate command after '--', e.g. "
                        f"rdsmigrate aws run -- preflight --source secret:ARN "
                        f"--target stack:{DEFAULT_STACK}")
    for i, arg in enumerate(args):
        # The same patterns that scrub messages (password=..., URL user:password@) find them.
        if redact_secrets(arg) != arg:
            before = f" (after {args[i - 1]})" if i and args[i - 1].startswith("-") else ""
            raise UserError(
                f"{WHO}: argument {i + 1}{before} holds a password, which RunTask would record "
                "in CloudTrail and the task's description: let the task read it from Secrets "
                "Manager instead (--source secret:ARN, --target stack:NAME)")


def run(args: list[str], options: RunOptions, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Start the task, follow it to its end; the exit code for this command. The task's log goes
    to ``out`` (stdout), this command's own messages to ``err`` (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    check_command(args)
    clients = Clients(WHO, options.region, needs=NEEDS,
                      region_hint="pass --region REGION or set AWS_REGION")
    runner = Runner.from_outputs(clients.stack_outputs(
        options.stack, OUTPUTS,
        missing_hint="was it deployed without the migration runner? Deploy this version of the "
                     "stack (cdk deploy)"))
    task_arn = _start(clients, runner, args)
    stream = runner.log_stream(task_arn)
    stop_hint = (f"aws ecs stop-task --region {clients.region} --cluster {runner.cluster} "
                 f"--task {task_arn}")
    err.write(f"{WHO}: started task {task_arn} in {runner.cluster}\n")
    if not options.wait:
        err.write(f"{WHO}: follow it with: aws logs tail {runner.log_group} --region "
                  f"{clients.region} --log-stream-names {stream} --follow\n")
        out.write(task_arn + "\n")
        return EXIT_OK
    try:
        task = _follow(clients, runner, task_arn, LogFollower(clients, runner.log_group, stream),
                       options.poll_s, out, err)
    except KeyboardInterrupt:
        raise Interrupted(f"{WHO}: interrupted; the task keeps running in AWS. Stop it with: "
                          f"{stop_hint}") from None
    return _exit_code(runner, task, err)


def _start(clients: Clients, runner: Runner, args: list[str]) -> str:
    reply = clients.call(
        "ecs", "run_task", f"the runner task {runner.task_definition}", verb="start",
        cluster=runner.cluster, taskDefinition=runner.task_definition, launchType="FARGATE",
        count=1, startedBy=STARTED_BY,
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": list(runner.subnets), "securityGroups": [runner.security_group],
            # Isolated subnets: AWS APIs are reached through the stack's VPC endpoints.
            "assignPublicIp": "DISABLED"}},
        overrides={"containerOverrides": [{"name": runner.container, "command": args}]},
    )
    failures = reply.get("failures") or []
    tasks = reply.get("tasks") or []
    if failures or not tasks:
        reasons = "; ".join(
            f"{f.get('reason', '?')}{': ' + f['detail'] if f.get('detail') else ''}"
            f"{' (' + f['arn'] + ')' if f.get('arn') else ''}" for f in failures) or "no task"
        raise UserError(f"{WHO}: ECS did not start the task: {reasons}: check that the stack "
                        f"{runner.cluster} is fully deployed and retry (cdk deploy)")
    return str(tasks[0]["taskArn"])


def _follow(clients: Clients, runner: Runner, task_arn: str, follower: LogFollower,
            poll_s: float, out: TextIO, err: TextIO) -> dict[str, Any]:
    """Stream the log until the task is STOPPED; the stopped task's description."""
    last_status = ""
    while True:
        follower.drain(out)
        task = _describe(clients, runner, task_arn)
        status = str(task.get("lastStatus", "?"))
        if status != last_status:
            err.write(f"{WHO}: task {status}\n")
            last_status = status
        if status == "STOPPED":
            # The awslogs driver has sent the container's last lines by the time the task has
            # stopped: one more look gets them.
            follower.drain(out)
            return task
        pause(poll_s)


def _describe(clients: Clients, runner: Runner, task_arn: str) -> dict[str, Any]:
    reply = clients.call("ecs", "describe_tasks", f"the task {task_arn}",
                         cluster=runner.cluster, tasks=[task_arn])
    tasks = reply.get("tasks") or []
    if not tasks:
        reasons = "; ".join(str(f.get("reason", "?")) for f in reply.get("failures") or [])
        raise UserError(f"{WHO}: ECS no longer knows the task {task_arn} ({reasons or 'gone'}): "
                        "a stopped task is kept about an hour; see its log in "
                        f"{runner.log_group}")
    return dict(tasks[0])


# What a task that stopped before its container ran to an end usually needs, by the start of its
# stop reason (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-errors.html).
_FIXES = (
    ("CannotPullContainerError", "the image could not be pulled: check that the stack's image "
     "asset was published (cdk deploy) and that the isolated subnets have the ECR (api, dkr) and "
     "S3 endpoints"),
    ("ResourceInitializationError", "the task could not fetch its secrets or set up its log: "
     "check the Secrets Manager and CloudWatch Logs endpoints and the execution role"),
)


def _exit_code(runner: Runner, task: dict[str, Any], err: TextIO) -> int:
    containers = [c for c in task.get("containers") or [] if c.get("name") == runner.container]
    container = containers[0] if containers else {}
    code = container.get("exitCode")
    reason = " ".join(str(r) for r in (task.get("stoppedReason"), container.get("reason")) if r)
    if code is None:
        fix = next((f for prefix, f in _FIXES if prefix in reason),
                   "see the stopped task in the ECS console, then retry")
        raise UserError(f"{WHO}: the task stopped before {runner.container} ran to its end "
                        f"({task.get('stopCode', '?')}: {reason or 'no reason given'}): {fix}")
    code = int(code)
    if code != EXIT_OK:
        err.write(f"{WHO}: {runner.container} exited {code}"
                  f"{' (' + reason + ')' if reason else ''}\n")
    return code
