#!/usr/bin/env bash
# The three static checks: ruff, ansible-lint (production profile) and ansible-test sanity.
# Runs all three even when one fails, prints a summary, and exits non-zero if any failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv_bin=${VENV_BIN:-$root/.venv/bin}
export PATH=$venv_bin:$PATH
cd "$root"

failed=()
summary=()
check() {
  local name=$1 start status
  shift
  echo "=== $name: $*"
  start=$SECONDS
  if "$@"; then status=passed; else status=FAILED; failed+=("$name"); fi
  summary+=("$(printf '%-12s %-6s %4ds' "$name" "$status" $((SECONDS - start)))")
}

check ruff ruff check .
check ansible-lint ansible-lint
check sanity bash tests/sanity/run.sh

echo "=== summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "static checks failed: ${failed[*]}" >&2
  exit 1
fi
