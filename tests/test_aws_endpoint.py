"""``--target stack:NAME`` and ``secret:ARN``: the database the staging stack deployed, found from
its CloudFormation outputs and Secrets Manager secret (moto), then used for real (local clusters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from typer.testing import CliRunner, Result

from rdsmigrate.cli import app
from rdsmigrate.db import aws
from rdsmigrate.db.connect import Endpoint
from rdsmigrate.errors import UserError
from rdsmigrate.localpg import LocalCluster
from tests.dbcheck import assert_same
from tests.fakeaws import fake_credentials

REGION = "eu-west-1"
STACK = "RdsMigrationStack"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_credentials(monkeypatch, REGION)
    with mock_aws():
        yield


def _deploy(cluster: LocalCluster, dbname: str, *, outputs: tuple[str, ...] = aws.OUTPUTS,
            name: str = STACK) -> None:
    """A stack with the real one's outputs; its secret holds the cluster's password as RDS writes
    it after the target attachment (username, password, engine, host, port). moto's CloudFormation
    cannot create secrets, so the secret is made directly and the stack names it."""
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"{name}-master", SecretString=json.dumps({
            "username": "postgres", "password": cluster.password, "engine": "postgres",
            "host": "127.0.0.1", "port": cluster.port}))["ARN"]
    values = {"DatabaseEndpoint": "127.0.0.1", "DatabasePort": str(cluster.port),
              "DatabaseName": dbname, "DatabaseSecretArn": arn}
    template = {
        "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {k: {"Value": v} for k, v in values.items() if k in outputs},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=name, TemplateBody=json.dumps(template))


def _fill(cluster: LocalCluster, dbname: str) -> None:
    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text);"
                     "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")


def test_copy_and_verify_into_the_stack_found_by_name(
    fake_aws: None, pg_source: LocalCluster, source_db: str, pg_target: LocalCluster,
    target_db: str,
) -> None:
    _fill(pg_source, source_db)
    _deploy(pg_target, target_db)
    # The local cluster has no TLS; the stack's real database requires it (the default).
    target = f"stack:{STACK}?sslmode=disable"
    src = pg_source.url(source_db)
    copied = _cli("copy", "-s", src, "-t", target, "--jobs", "2", "--json")
    assert copied.exit_code == 0, copied.output
    assert f"@127.0.0.1:{pg_target.port}/{target_db}" in json.loads(copied.stdout)["result"]["target"]
    verified = _cli("verify", "-s", src, "-t", target, "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["result"]["identical"] is True
    assert_same(pg_source.dsn(source_db), pg_target.dsn(target_db))
    for text in (copied.output, verified.output):
        assert pg_target.password not in text and pg_source.password not in text


def test_a_secret_alone_gives_host_port_user_and_password(
    fake_aws: None, pg_target: LocalCluster, target_db: str,
) -> None:
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="staging-master", SecretString=json.dumps({
            "username": "postgres", "password": pg_target.password, "host": "127.0.0.1",
            "port": pg_target.port, "dbname": target_db, "engine": "postgres"}))["ARN"]
    endpoint = Endpoint.parse("target", f"secret:{arn}?sslmode=disable")
    assert endpoint.describe() == f"postgres@127.0.0.1:{pg_target.port}/{target_db}"
    with psycopg.connect(endpoint.conninfo) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (target_db,)


def test_tls_is_required_unless_the_spec_says_otherwise(
    fake_aws: None, pg_target: LocalCluster,
) -> None:
    _deploy(pg_target, "app")
    params = aws.resolve("target", f"stack:{STACK}")
    assert params["sslmode"] == "require" and params["user"] == "postgres"
    assert params["password"] == pg_target.password and params["dbname"] == "app"
    explicit = aws.resolve("target", f"stack:{STACK}?sslmode=verify-full&sslrootcert=/ca.pem"
                                     f"&region={REGION}")
    assert explicit["sslmode"] == "verify-full" and explicit["sslrootcert"] == "/ca.pem"
    assert "region" not in explicit


@pytest.mark.parametrize(("spec", "message"), [
    ("stack:NoSuchStack", f"the stack NoSuchStack does not exist in {REGION}"),
    ("stack:Partial", "has no output DatabaseSecretArn"),
    ("secret:arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf",
     "does not exist in eu-west-1"),
    ("stack:", "needs a name"),
    (f"stack:{STACK}?password=x", "remove password="),
])
def test_aws_specs_that_cannot_work_are_one_line_errors_that_change_nothing(
    fake_aws: None, pg_source: LocalCluster, source_db: str, pg_target: LocalCluster,
    target_db: str, spec: str, message: str,
) -> None:
    _fill(pg_source, source_db)
    _deploy(pg_target, target_db)
    _deploy(pg_target, target_db, outputs=aws.OUTPUTS[:3], name="Partial")
    result = _cli("copy", "-s", pg_source.url(source_db), "-t", spec)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    with psycopg.connect(pg_target.dsn(target_db)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'items'").fetchone() == (0,)


def test_without_aws_credentials_the_error_says_how_to_give_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probe
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(UserError, match="no AWS region"):
        Endpoint.parse("target", f"stack:{STACK}")
    with pytest.raises(UserError, match=r"no AWS credentials .* AWS_PROFILE"):
        Endpoint.parse("target", f"stack:{STACK}?region={REGION}")
