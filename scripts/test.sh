#!/usr/bin/env bash
# The whole suite: unit tests (no privileges) and, as root, the network tests in test/net/ that run real agents
# in network namespaces. Every test cleans up after itself; this script also sweeps leftovers of a crashed run.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "vxtun: not root: running unit tests only (test/net/ needs root for TUN devices and namespaces)" >&2
  exec npx uvu -r tsx/cjs test '^(?!net/).*\.test\.ts$'
fi
npx uvu -r tsx/cjs test '\.test\.ts$'
status=$?
bash scripts/sweep.sh
exit $status
