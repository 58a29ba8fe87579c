# Entry points of the project. `make synth` and `make test` are the README's two commands:
# each sets up what it needs (a virtual environment, the pinned CDK CLI) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup synth deploy test lint typecheck unit clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: setup
	cdk synth --quiet
	@echo "CloudFormation templates written to: $(CURDIR)/cdk.out"
	@ls -1 cdk.out/*.template.json

# Needs AWS credentials. STACKS: which stacks; CDK_ARGS: e.g. -c thing_name=my-device.
STACKS ?= IoTSecureTunnelDemo
deploy: setup
	cdk deploy $(STACKS) $(CDK_ARGS)

lint: setup
	ruff check .
	ruff format --check .

typecheck: setup
	mypy

unit: setup
	pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache

# Reliability evidence (docs/reliability.md): every AWS call of every lifecycle event failing,
# CloudFormation's side failing, duplicates, bad input, load and token leaks, against the real
# handler on the local rig. Prints the summary table; fails if a scenario fails, a tunnel is left
# open that CloudFormation does not reference, or a token leaks. Every scenario's outcome is
# written to build/reliability-report.md.
.PHONY: reliability
reliability: setup
	@mkdir -p build
	RELIABILITY_REPORT=$(CURDIR)/build/reliability-report.md pytest tests/reliability -q

# Performance figures (docs/benchmarks.md): cold start, per-event wall time and AWS calls on the
# rig with injected latency, Delete vs crhelper's sleep, the Lambda asset, synth time and limits
# for 1/10/50 tunnels per stack. Each figure beside its floor, as a ratio. Prints the table and
# rewrites docs/benchmarks.md (a few minutes). Not part of `make test`.
.PHONY: bench
bench: setup
	python -m bench

# A standalone provider release (docs/deploy-without-cdk.md), for the AWS CLI or a StackSet, without
# CDK or `cdk bootstrap`: dist/iot-secure-tunnel-provider.template.json (the handler zip's bucket
# and key are parameters), dist/secure-tunnel-handler-<asset hash>.zip (byte-identical on every
# build of the same code) and dist/SHA256SUMS (`cd dist && sha256sum -c SHA256SUMS`).
.PHONY: dist
dist: setup
	python -m tools.dist --output $(CURDIR)/dist

# Integration test on a real AWS account (docs/integration-test.md). NEEDS AWS CREDENTIALS and a
# bootstrapped account/region (`cdk bootstrap`); costs one secure tunnel (plus one token rotation)
# and takes about 10 minutes. Deploys integ/integ_secure_tunnel.py (the demo stack, a secret
# checker, integ-tests assertions), checks the tunnel is OPEN, the source secret's fields and a
# rotation, destroys everything, then checks the tunnel is gone. INTEG_REGION: e.g. eu-west-1
# (default: AWS_REGION / the profile's). `make integ-snapshot` rewrites the committed snapshot
# that CI compares with (synth only, no account: run `make integ` to show the change works).
INTEG_REGION ?=
.PHONY: integ integ-snapshot
integ: setup
	python integ/run_integ.py $(if $(INTEG_REGION),--region $(INTEG_REGION))

integ-snapshot: setup
	python integ/snapshot.py update
