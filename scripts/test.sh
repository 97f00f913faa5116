#!/usr/bin/env bash
# The whole suite: unit tests (no privileges) and, as root, the network tests in test/net/ that run real agents
# in network namespaces. Each test removes what it made, also on failure (try/finally and exit hooks in src/lab/);
# scripts/sweep.sh is the manual broom for what a SIGKILLed run may leave.
# uvu's own totals are followed by one plain line, "N passed, N failed", that any CI can read.
set -uo pipefail
cd "$(dirname "$0")/.."
pattern='\.test\.ts$'
if [ "$(id -u)" -ne 0 ]; then
  echo "vxtun: not root: running unit tests only (test/net/ needs root for TUN devices and namespaces)" >&2
  pattern='^(?!net/).*\.test\.ts$'
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx uvu -r tsx/cjs test "$pattern" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
passed=$(grep -oE '^ *Passed: +[0-9]+' <<<"$plain" | grep -oE '[0-9]+' | tail -1)
total=$(grep -oE '^ *Total: +[0-9]+' <<<"$plain" | grep -oE '[0-9]+' | tail -1)
skipped=$(grep -oE '^ *Skipped: +[0-9]+' <<<"$plain" | grep -oE '[0-9]+' | tail -1)
if [ -n "$total" ] && [ -n "$passed" ]; then
  failed=$((total - passed))  # uvu counts skipped tests outside Total
  # A suite that dies outside a test (an uncaught error) exits non-zero with its failures uncounted.
  [ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
  echo "${passed} passed, ${failed} failed, ${skipped:-0} skipped"
else
  echo "0 passed, 1 failed (the test runner printed no totals)"
  [ "$status" -eq 0 ] && status=1
fi
exit "$status"
