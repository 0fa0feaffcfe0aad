"""rds-migration: move a PostgreSQL database to Amazon RDS without losing a row.

Two halves share this package: the migration engine (``rdsmigrate`` CLI) and, under
``rdsmigrate.infra``, the CDK code of the staging environment. They never import each other.
"""

__version__ = "0.1.0"
