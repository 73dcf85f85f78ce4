# Two commands a newcomer needs: `make bootstrap` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
# Everything below runs the venv's tools (ansible-playbook, lab, pytest, molecule ...).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap test tools venv lab-up lab-down lab-status lab-reset static ruff lint sanity pytest molecule bench build clean

bootstrap: venv tools lab-up ## Install, start the lab twin, and run site.yml on it
	ansible-playbook site.yml

test: venv tools static pytest molecule ## The whole suite

# The venv is rebuilt only when a requirement changes; pip's cache lives under ~/.cache/pip.
$(VENV)/.installed: requirements.txt requirements-dev.txt lab/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -e ./lab
	touch $@

venv: $(VENV)/.installed

# The real tools (talosctl, kube-apiserver, kubectl, etcd, helm, flux), built from the Go module proxy at
# the versions in tools/versions.env into ~/.cache/turnkey-cluster/tools; present ones are skipped.
tools:
	tools/build

lab-up: venv
	lab up
lab-down: venv
	lab down
lab-status: venv
	lab status
lab-reset: venv
	lab reset

static: ruff lint sanity
ruff: venv
	ruff check .
lint: venv
	ansible-lint
sanity: venv
	bash tests/sanity/run.sh

# Unit, integration (real ansible-playbook runs), lab (real OpenBao) and end-to-end tests.
pytest: venv
	pytest -n 2 tests

# One scenario per role, each converge -> idempotence -> verify on the controller.
molecule: venv
	for scenario in molecule/*/molecule.yml; do molecule test -s "$$(basename "$$(dirname "$$scenario")")"; done

# Benchmarks, not tests: wall time and API calls of layer 01 on fresh labs (realistic profile), and the
# waits the tests no longer bound (retries through 429s, a stuck server's timeout).
bench: venv
	python -m benchmarks.proxmox_nodes
	python -m benchmarks.hetzner_requests
	python -m benchmarks.hetzner_waits

build: venv
	ansible-galaxy collection build --force

clean:
	-lab down
	rm -rf $(VENV) .state tests/output turnkey-cluster-*.tar.gz
