#!/usr/bin/env python3
"""CDK entry point: validate the context, build the staging stack, synthesize."""

import os
import sys

# jsii (the bridge to aws-cdk-lib's JavaScript) prints a 12-line banner on stderr when Node is
# past end of life; on the Node 18/20 still common on build hosts it would bury the one-line
# configuration errors below. Node 22+ prints nothing either way.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk

from rdsmigrate.infra.settings import SettingsError
from rdsmigrate.infra.stack import build

app = cdk.App()
try:
    build(app)
except SettingsError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
app.synth()
