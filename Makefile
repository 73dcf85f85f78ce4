# Two commands a newcomer needs: `make bootstrap` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
# Everything below runs the venv's tools (ansible-playbook, lab, pytest, molecule ...).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap test venv lab-up lab-down lab-status lab-reset static ruff lint sanity pytest molecule build clean

bootstrap: venv lab-up ## Install, start the lab twin, and run site.yml on it
	ansible-playbook site.yml

test: venv static pytest molecule ## The whole suite

# The venv is rebuilt only when a requirement changes; pip's cache lives under ~/.cache/pip.
$(VENV)/.installed: requirements.txt requirements-dev.txt lab/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -e ./lab
	touch $@

venv: $(VENV)/.installed

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

build: venv
	ansible-galaxy collection build --force

clean:
	-lab down
	rm -rf $(VENV) .state tests/output turnkey-cluster-*.tar.gz
