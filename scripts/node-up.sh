#!/usr/bin/env bash
# Builds and starts a node daemon on this machine, joined to the control plane that
# scripts/up.sh started here (as root). It changes this host's network (bridge skiff0).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p skiff-runtime
cargo rustc --release -p skiff-pause --bin skiff-pause -- \
  -C target-feature=+crt-static -C relocation-model=static
install -m 0755 target/release/skiff-runtime target/release/skiff-pause /usr/local/bin/
control=${SKIFF_DATA_DIR:-/var/lib/skiff/control}
exec /usr/local/bin/skiff-runtime \
  --server "${SKIFF_SERVER:-https://127.0.0.1:6443}" \
  --token "@$control/node-token" \
  --ca-file "$control/pki/ca.crt" \
  --root-dir "${SKIFF_NODE_ROOT:-/var/lib/skiff/node}" \
  "$@"
