"""Rotation of the master secret that can actually run from inside the isolated VPC."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from rdsmigrate.infra import constants as c


class SecretRotation(Construct):
    """Hosted single-user rotation every 30 days.

    The database subnets have no NAT, so the function runs in them, reaches Secrets Manager
    through the VPC's interface endpoint and gets its own security group, which the database
    security group admits on 5432. The schedule is attached to the secret *target attachment*
    (not the bare secret): CloudFormation then creates it only after the secret carries the
    instance's host and port, which the first rotation needs.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        instance: rds.DatabaseInstanceBase,
        secret: secretsmanager.ISecret,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        endpoint: ec2.IInterfaceVpcEndpoint,
    ) -> None:
        super().__init__(scope, id_)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Secrets Manager rotation function for the staging database",
            allow_all_outbound=False,
        )
        self.hosted_rotation = secretsmanager.HostedRotation.postgre_sql_single_user(
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            exclude_characters=c.PASSWORD_EXCLUDE_CHARACTERS,
        )
        self.schedule = secret.add_rotation_schedule(
            "Schedule",
            hosted_rotation=self.hosted_rotation,
            automatically_after=Duration.days(c.ROTATION_DAYS),
        )
        # An explicit port, not allow_default_port_from: the instance's port is a token
        # (Endpoint.Port), and rules on a token port cannot be checked by cdk-nag or reviewers.
        instance.connections.allow_from(
            self.security_group,
            ec2.Port.tcp(c.DATABASE_PORT),
            "PostgreSQL from the secret rotation function",
        )
        # Egress only: the endpoint's own group already admits the whole VPC on 443, and a
        # second, narrower ingress rule would be one nobody can remove without noticing.
        for group in endpoint.connections.security_groups:
            self.security_group.add_egress_rule(
                ec2.Peer.security_group_id(group.security_group_id),
                ec2.Port.tcp(c.HTTPS_PORT),
                "Rotation function to the Secrets Manager endpoint",
            )
