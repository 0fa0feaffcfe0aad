# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install the package with everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Prerequisites are expanded when a rule is read, so every stamp is named before the rules.
NODE_STAMP := node_modules/.installed-stamp
CONTAINER_STAMP := $(VENV)/.container-tools-stamp

.PHONY: demo test synth lint bench bench-tables clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[infra,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rdsmigrate demo

test: $(STAMP) $(NODE_STAMP) $(CONTAINER_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

# The pinned npm `aws-cdk` CLI (package-lock.json) for `cdk synth`/`cdk deploy`; npm ci is
# re-run only when the lock file changes.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# podman (with runc) and mmdebstrap for tests/test_container.py, which builds the runner image
# from Debian packages and runs it (containers/containers.conf says why runc). Installed as root
# with apt-get when missing; elsewhere that test skips and says why, and the stamp is not written
# so a later run as root installs them.
$(CONTAINER_STAMP): | $(STAMP)
	@if command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; then \
	  touch $@; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "make: podman, runc or mmdebstrap is missing and cannot be installed here (needs root and apt-get): the container test will skip"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap >/dev/null && touch $@; \
	fi

# Writes cdk.out/RdsMigrationStack.template.json; needs no AWS credentials.
synth: $(STAMP) $(NODE_STAMP)
	CDK_DISABLE_VERSION_CHECK=1 node_modules/.bin/cdk synth --quiet --no-notices

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench app.py
	$(VENV)/bin/mypy

# The benchmarks (see bench/__init__.py), on durable clusters (fsync, synchronous_commit and
# full_page_writes on, as RDS runs; --no-durable for the disposable settings), about 15 minutes at
# the default scale 40: the copy contenders (issues 4 and 13), then the online mode (native
# subscription against rdsmigrate copy and sync, lag under pgbench, cutover downtime).
# BENCH_ARGS passes options to the first, ONLINE_ARGS to the second, e.g.
# `make bench BENCH_ARGS="--scale 120 --rounds 5"`.
# pgcopydb is a contender when it can be installed (Debian package, as root); otherwise the
# report says it is absent.
# pgcopydb, a contender of both benchmarks: installed as root with apt-get when missing, else
# reported as absent.
define INSTALL_PGCOPYDB
	@if command -v pgcopydb >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "bench: pgcopydb is not installed and we are not root: it will be reported as absent (sudo apt-get install pgcopydb)"; \
	else { apt-cache policy pgcopydb 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq; } && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb >/dev/null && echo "bench: installed pgcopydb" || \
	  echo "bench: pgcopydb could not be installed (apt-get failed): it will be reported as absent"; fi
endef

bench: $(STAMP)
	$(INSTALL_PGCOPYDB)
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench --online $(ONLINE_ARGS)

# The many-tables dataset of issue 13 (50 schemas of small tables with a key, an index and a
# foreign key): every contender at each size in TABLES (default 1,000 and 10,000), and how each
# phase grows. Long: at 10,000 tables one round of all contenders takes about half an hour here.
TABLES ?= 1000,10000
bench-tables: $(STAMP)
	$(INSTALL_PGCOPYDB)
	$(PY) -m bench --tables $(TABLES) $(TABLES_ARGS)

clean:
	rm -rf $(VENV) cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
