"""Running rdsmigrate's own steps inside the staging VPC, from a laptop (``rdsmigrate aws run``).

The staging stack deploys a Fargate task definition whose image is this repository's
``Dockerfile`` (ENTRYPOINT ``rdsmigrate``); :mod:`.run` starts one task with the user's command,
:mod:`.logs` streams what it prints back from CloudWatch Logs.
"""
