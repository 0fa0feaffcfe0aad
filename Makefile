# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv on first use and install the package with everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Prerequisites are expanded when a rule is read, so every stamp is named before the rules.
NODE_STAMP := node_modules/.installed-stamp

.PHONY: demo test synth lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[infra,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rdsmigrate demo

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

# The pinned npm `aws-cdk` CLI (package-lock.json) for `cdk synth`/`cdk deploy`; npm ci is
# re-run only when the lock file changes.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Writes cdk.out/RdsMigrationStack.template.json; needs no AWS credentials.
synth: $(STAMP) $(NODE_STAMP)
	CDK_DISABLE_VERSION_CHECK=1 node_modules/.bin/cdk synth --quiet --no-notices

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests app.py
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
