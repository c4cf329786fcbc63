# pgrepl: two entry points for users, `make demo` and `make test`; the rest are steps they are made of.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV    := $(CURDIR)/.venv
PY      := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.tmp/collections
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf

.PHONY: demo demo-local test deps venv lint test-runner test-faults test-modules test-molecule lab-up lab-down collection bench bench-swap bench-compare bench-peers bench-footprint bench-push clean

step = @printf '\n\033[1m==== %s ====\033[0m\n' $(1)

## make demo: the lab's three hosts, site.yml deployed on them, pgbench on both masters, kicks, status, tables side by side.
demo: deps venv
	$(call step,"demo: the founding document's cluster on the lab (lab/demo.sh)")
	lab/demo.sh

## The same walk-through with the CLI alone, on three local PostgreSQL clusters (no containers, no Ansible).
demo-local: deps venv
	$(PY) scripts/demo_local.py

## make test: installs everything, then each layer of the suite: lint, the local suites side by side, the lab
test: deps venv
	$(call step,"lint")
	$(MAKE) --no-print-directory lint
	$(call step,"runner tests + module tests side by side (each on its own clusters and ports)")
	$(MAKE) --no-print-directory -j2 --output-sync=target test-runner test-modules
	$(call step,"fault suite alone (kill -9 and crashed servers under pgbench: timings matter)")
	$(MAKE) --no-print-directory test-faults
	$(call step,"molecule scenarios on the lab (default, failover-of-a-target, topology, upgrade)")
	$(MAKE) --no-print-directory test-molecule

deps:
	scripts/install-deps.sh

venv: $(VENV)/.done
$(VENV)/.done: requirements-dev.txt runner/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e runner
	touch $@

# The collection as users get it: built into a tarball and installed where ansible finds pgrepl.cluster.
collection: venv
	scripts/build-collection.sh

lint: venv
	ruff check .
	antsibull-changelog lint
	shellcheck lab/*.sh scripts/*.sh .ci/run
	scripts/check-alert-rules.sh
	scripts/lint-collection.sh

test-runner: venv
	$(PY) -m pytest -q tests/runner

# Faults injected into real local clusters; each scenario prints what it injected and checked, also kept in
# .tmp/faults-report.txt.
test-faults: venv
	mkdir -p .tmp && rm -f .tmp/faults-report.txt
	rc=0; PGREPL_FAULTS_REPORT=$(CURDIR)/.tmp/faults-report.txt $(PY) -m pytest -q tests/faults || rc=$$?; \
	  cat .tmp/faults-report.txt 2>/dev/null || true; exit $$rc

test-modules: venv collection
	$(PY) -m pytest -q tests/modules

test-molecule: venv
	lab/molecule.sh

lab-up: deps venv
	lab/lab.sh up

lab-down:
	lab/lab.sh down

bench: venv
	$(PY) bench/bench.py
	$(PY) bench/compare.py

bench-compare: venv
	$(PY) bench/compare.py

bench-swap: venv
	$(PY) bench/swap_lag.py

## The runner's memory (RSS, PSS, USS) with 10 syncs; ARGS="--compare OTHER/runner/src" measures another tree beside.
bench-footprint: venv
	$(PY) bench/footprint.py $(ARGS)

## A pushdelta run's lag, TPS ratio and statements per run; BENCH_VARIANTS="new=runner/src,old=OTHER/runner/src".
bench-push: deps venv
	$(PY) bench/push_cost.py

## pgrepl, Bucardo 5.6 and native logical replication side by side (about 40 minutes; ARGS=--quick: a few).
bench-peers: deps venv
	$(PY) bench/peers $(ARGS)

clean: lab-down
	rm -rf $(VENV) .tmp
