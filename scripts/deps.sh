#!/usr/bin/env bash
# Installs what building and testing skiff needs on Debian/Ubuntu (run as root):
# protoc (etcd-client's build), etcd (the etcd store suite), iptables and busybox-static
# (node and network work), and Debian's stock kubectl unpacked to /opt/debian-kubectl
# (unpacked rather than installed: some images ship another `kubectl` package that
# conflicts with kubernetes-client).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "scripts/deps.sh: run as root (apt-get install)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  protobuf-compiler libprotobuf-dev etcd-server iptables busybox-static ca-certificates iproute2 \
  docker-registry >/dev/null

if [ ! -x /opt/debian-kubectl/usr/bin/kubectl ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq kubernetes-client)
  mkdir -p /opt/debian-kubectl
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb /opt/debian-kubectl
  rm -rf "$tmp"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/deps.sh: no Rust toolchain; install one with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
echo "dependencies ready: $(protoc --version), etcd $(etcd --version | head -n1 | awk '{print $3}'), kubectl $(/opt/debian-kubectl/usr/bin/kubectl version --client --short 2>/dev/null || echo present)"
