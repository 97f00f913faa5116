#!/usr/bin/env bash
# The whole suite: unit tests (no privileges) and, as root, the network tests in test/net/ that run real agents
# in network namespaces. Each test removes what it made, also on failure (try/finally and exit hooks in src/lab/);
# scripts/sweep.sh is the manual broom for what a SIGKILLed run may leave.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "vxtun: not root: running unit tests only (test/net/ needs root for TUN devices and namespaces)" >&2
  exec npx uvu -r tsx/cjs test '^(?!net/).*\.test\.ts$'
fi
exec npx uvu -r tsx/cjs test '\.test\.ts$'
