# Two commands a newcomer needs: `make bootstrap` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
# Everything below runs the venv's tools (ansible-playbook, lab, pytest, molecule ...).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap test tools venv system-packages lab-up lab-down lab-status lab-reset static ruff lint sanity pytest molecule bench build clean

bootstrap: venv tools lab-up ## Install, start the lab twin, and run site.yml on it
	ansible-playbook site.yml

# The whole suite. With every tool built: static, pytest, molecule. On a machine that lacks some (a first run, a new
# pin), tools/build runs in the background beside the static checks and the tests marked `toolfree`, which pytest
# runs first; every other test waits for the build (tests/conftest.py), so a cold run does not pay for the builds
# and the tests one after the other (docs/testing.md). The build's log is printed when it ends.
TOOLS_BUILD_LOG ?= $(CURDIR)/.state/tools-build.log
test: venv
	@if tools/build --check >/dev/null; then \
	  $(MAKE) --no-print-directory static pytest molecule; exit; fi; \
	mkdir -p "$(dir $(TOOLS_BUILD_LOG))"; \
	echo "make test: tools/build runs beside the static checks and the toolfree tests (log: $(TOOLS_BUILD_LOG))"; \
	tools/build > "$(TOOLS_BUILD_LOG)" 2>&1 & build=$$!; \
	trap 'kill $$build 2>/dev/null || true' EXIT; \
	export TURNKEY_TOOLS_BUILD_LOG="$(TOOLS_BUILD_LOG)"; \
	$(MAKE) --no-print-directory static || exit 1; \
	failed=""; $(MAKE) --no-print-directory pytest || failed="$$failed pytest"; \
	wait $$build || failed="$$failed tools"; \
	cat "$(TOOLS_BUILD_LOG)"; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi; \
	$(MAKE) --no-print-directory molecule

# The venv is rebuilt only when a requirement changes; pip's cache lives under ~/.cache/pip.
$(VENV)/.installed: requirements.txt requirements-dev.txt lab/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -e ./lab
	touch $@

venv: system-packages $(VENV)/.installed

# Distribution packages the lab needs: Debian's openssh-server (the lab's Git host is its real sshd with
# git-shell), git, and PowerDNS (pdns-server, sqlite3 backend: the lab's DNS primary and secondary);
# chromium, chromium-driver and libnss3-tools: verify's SSO login check drives Debian's headless Chromium with
# the system chromedriver (never a downloaded one) and trusts the CA through an NSS db made with certutil.
# Installed with apt-get only when missing, as root or with sudo; nothing else changes.
SYSTEM_PACKAGES ?= openssh-server git pdns-server pdns-backend-sqlite3 chromium chromium-driver libnss3-tools
system-packages:
	@if [ -x /usr/sbin/sshd ] && command -v git >/dev/null && command -v git-shell >/dev/null \
	  && [ -x /usr/sbin/pdns_server ] && [ -f /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] \
	  && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v certutil >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "install $(SYSTEM_PACKAGES) with the system's package manager (the lab needs /usr/sbin/sshd, git, git-shell)" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else \
	  echo "apt-get install -y $(SYSTEM_PACKAGES) needs root: run it as root, then make again" >&2; exit 1; fi; \
	echo "installing $(SYSTEM_PACKAGES) (the lab's Git host runs Debian's sshd)"; \
	apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	$$apt install -y -q --no-install-recommends $(SYSTEM_PACKAGES) \
	  || { $$apt update -q && $$apt install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }; \
	if command -v systemctl >/dev/null && systemctl is-enabled ssh >/dev/null 2>&1; then \
	  echo "note: the package enabled the system's ssh service; the lab does not need it (systemctl disable --now ssh)"; fi; \
	if command -v systemctl >/dev/null && systemctl is-enabled pdns >/dev/null 2>&1; then \
	  echo "the lab runs its own PowerDNS instances: disabling the system's pdns service"; \
	  $$sudo systemctl disable --now pdns || true; fi

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

# Unit, integration (real ansible-playbook runs), lab (real OpenBao) and end-to-end tests, on two workers
# (PYTEST_WORKERS=3 is about 9 minutes faster here, and not yet reliable: docs/testing.md). The slowest 40 are listed
# at the end: where CI's time goes (docs/testing.md).
PYTEST_WORKERS ?= 2
pytest: venv
	pytest -n $(PYTEST_WORKERS) --durations=40 tests

# One scenario per role, each converge -> idempotence -> verify on the controller. The scenarios that call
# APIs share ONE lab (every twin, the Talos node twin included) on its own net and state folder, started
# here before them and brought down on exit, pass or fail; they find it through TURNKEY_LAB_DIR. The real
# tools (talosctl, kubectl, helm) come from tools.env. Every scenario runs; the wall times and the failed
# scenarios are printed at the end.
MOLECULE_LAB_NET ?= 127.70
MOLECULE_LAB_DIR ?= $(CURDIR)/.state/molecule-lab
TOOLS_ENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/turnkey-cluster/tools/tools.env
molecule: venv
	set -a; source "$(TOOLS_ENV)"; set +a; \
	export TURNKEY_LAB_NET=$(MOLECULE_LAB_NET) TURNKEY_LAB_DIR=$(MOLECULE_LAB_DIR); \
	lab down >/dev/null 2>&1 || true; rm -rf "$$TURNKEY_LAB_DIR"; \
	trap 'lab down >/dev/null 2>&1 || true' EXIT; \
	started=$$SECONDS; lab up --profile fast; times="lab up $$((SECONDS - started)) s"; \
	failed=""; for scenario in molecule/*/molecule.yml; do \
	  name="$$(basename "$$(dirname "$$scenario")")"; started=$$SECONDS; \
	  molecule test -s "$$name" || failed="$$failed $$name"; times="$$times, $$name $$((SECONDS - started)) s"; \
	done; \
	echo "molecule: $$times"; \
	if [ -n "$$failed" ]; then echo "molecule: failed:$$failed"; exit 1; fi

# Benchmarks, not tests: wall time and API calls of layer 01 on fresh labs (realistic profile), a modelled
# cold bootstrap per layer and phase for the example topology and 3/6/12 nodes, and the waits the tests no
# longer bound (retries through 429s, a stuck server's timeout).
bench: venv
	python -m benchmarks.proxmox_nodes
	python -m benchmarks.cold_bootstrap
	python -m benchmarks.hetzner_requests
	python -m benchmarks.hetzner_waits

build: venv
	ansible-galaxy collection build --force

clean:
	-lab down
	rm -rf $(VENV) .state tests/output turnkey-cluster-*.tar.gz
