#!/usr/bin/env bash
# Build (once per source digest) the webhook client from the Go module proxy and print its path.
# The binary is cached under /var/tmp/kaudit-webhook-client (KAUDIT_WEBHOOK_CLIENT_CACHE).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KAUDIT_WEBHOOK_CLIENT_CACHE:-/var/tmp/kaudit-webhook-client}"
key=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" 2>/dev/null | sha256sum | cut -c1-16)
bin="$cache/webhook-client-$key"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "go not found: the webhook client needs Go (1.24+)" >&2; exit 2; }
  mkdir -p "$cache"
  echo "[webhook-client] building k8s.io/apiserver audit webhook client (a few minutes the first time)" >&2
  (cd "$here" && { [ -f go.sum ] || go mod tidy >&2; } && go build -o "$bin.tmp" . >&2)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
