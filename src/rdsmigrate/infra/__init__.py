"""The staging environment as AWS CDK code.

Nothing here imports the migration engine, and the engine never imports this package: the
stack must synthesize on a machine that has no PostgreSQL, and the engine must run where
aws-cdk-lib is not installed.
"""
