#!/usr/bin/env bash
# Build the Talos node twin into the tools cache and print the binary's path on stdout.
# The folder is named after a hash of the sources, so an unchanged tree is never rebuilt.
#   lab/talos-twin/build.sh              build when missing, print the path
#   lab/talos-twin/build.sh --print-path print the path, exit 1 when it is not built
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/turnkey-cluster"
tools="$cache/tools"

# the hash covers every file the build reads from this folder
hash="$(cd "$here" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
    ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)"
dest="$tools/talos-twin-$hash"
binary="$dest/talos-twin"

if [[ "${1:-}" == "--print-path" ]]; then
    [[ -x "$binary" ]] || { echo "talos-twin is not built ($binary missing); run lab/talos-twin/build.sh" >&2; exit 1; }
    echo "$binary"
    exit 0
fi

mkdir -p "$tools/logs"
exec 9>"$tools/.talos-twin.lock"
flock 9  # two test workers may ask at once; the second finds the first's build

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOWORK=off CGO_ENABLED=0 \
    GOFLAGS="-modcacherw -mod=readonly"
log="$tools/logs/talos-twin.log"
staging="$(mktemp -d "$tools/.build-talos-twin-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
chmod 755 "$staging"

started=$SECONDS
if ! (cd "$here" && nice -n "${TURNKEY_TOOLS_NICE:-15}" "$go" build -trimpath -ldflags "-s -w" \
        -o "$staging/talos-twin" .) >"$log" 2>&1; then
    echo "talos-twin: build failed; log: $log" >&2
    tail -n 25 "$log" >&2
    exit 1
fi
printf '{"name": "talos-twin", "source_hash": "%s", "seconds": %d}\n' "$hash" $((SECONDS - started)) \
    >"$staging/build.json"
mv -T "$staging" "$dest"  # atomic: the folder appears complete or not at all
trap - EXIT
echo "talos-twin: built in $((SECONDS - started))s" >&2
echo "$binary"
