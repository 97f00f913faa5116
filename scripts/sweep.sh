#!/usr/bin/env bash
# Removes what a crashed test or lab may have left: vxtun's namespaces (vxt-*), their processes, and devices.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vxt-' || true); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
done
for dev in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^vxt-' || true); do
  ip link del "$dev" 2>/dev/null || true
done
exit 0
