#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine (as root): install what the tests
# need, build, run every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make test
