#!/usr/bin/env bash
# Runs skiff-control's benchmark on SQLite and on a throwaway etcd on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p skiff-control
bin=target/release/skiff-control
echo "== sqlite"
"$bin" bench --store sqlite "$@"

etcd_dir=$(mktemp -d)
client_port=23790
peer_port=23800
etcd --data-dir "$etcd_dir" --name bench \
  --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$peer_port" >"$etcd_dir/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null; rm -rf "$etcd_dir"' EXIT
for _ in $(seq 50); do
  if curl -sf "http://127.0.0.1:$client_port/health" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo "== etcd"
"$bin" bench --store "etcd=http://127.0.0.1:$client_port" "$@"
