#!/usr/bin/env bash
# Runs the node benchmarks (runtime/benches/node.rs) as root: pods (the real daemon with an
# in-process control plane), containers (skiff-runtime run vs crun vs runc) and network
# (skiff's pod network vs the CNI bridge plugin). Installs crun, runc, the CNI plugins and
# busybox-static first, builds the release binaries, then runs the benchmarks named on the
# command line (all three when none is), e.g.
#   scripts/bench-node.sh                   # all, about 3 minutes
#   scripts/bench-node.sh containers --runs 50
# Everything runs in network namespaces, cgroups and temp dirs the benchmark makes and
# removes (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/bench-node.sh: run as root (namespaces, cgroups, apt-get)" >&2
  exit 1
fi

need=()
command -v crun >/dev/null 2>&1 || need+=(crun)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The daemon and pause binaries the pods benchmark starts (target/release).
cargo build --release -p skiff-runtime
# pause as nodes run it: linked statically (glibc's shared pages are most of a dynamic
# pause's memory; see pause/README.md)
cargo rustc --release -p skiff-pause --bin skiff-pause -- \
  -C target-feature=+crt-static -C relocation-model=static
exec cargo bench -p skiff-runtime --bench node -- "$@"
