#!/usr/bin/env bash
# Installs what skiff needs, builds it, and starts the control plane on its embedded store
# (as root). Ctrl-C stops it; the data stays in $SKIFF_DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -p skiff-control -p skiffctl
data_dir=${SKIFF_DATA_DIR:-/var/lib/skiff/control}
listen=${SKIFF_LISTEN:-0.0.0.0:6443}
install -m 0755 target/release/skiff-control target/release/skiffctl /usr/local/bin/
cat <<TXT

skiff-control is starting (data in $data_dir). In another shell:

  export KUBECONFIG=$data_dir/admin.kubeconfig
  skiffctl get namespaces
  skiffctl apply -f examples/

TXT
exec /usr/local/bin/skiff-control serve --data-dir "$data_dir" --listen "$listen"
