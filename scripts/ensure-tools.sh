#!/usr/bin/env bash
# Installs the system tools vxtun's demo, tests and benchmarks use, with apt-get, only when missing.
set -euo pipefail
declare -A package_of=(
  [iptables]=iptables [nft]=nftables [tcpdump]=tcpdump
  [ip]=iproute2 [iperf3]=iperf3 [tshark]=tshark [etcd]=etcd-server [etcdctl]=etcd-client
  [ethtool]=ethtool [ping]=iputils-ping [nft]=nftables [bird]=bird2 [birdc]=bird2 [setpriv]=util-linux
)
missing=()
# The CNI plugins the lab's pods are attached with (bridge, host-local), where Debian puts them.
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
# liburing's header: the native addon batches TUN reads and writes with io_uring when it is there at build time
# (binding.gyp; without it the build still works and --tun-io uring falls back to readv).
[ -f /usr/include/liburing.h ] || missing+=(liburing-dev)
# scapy (test/net/forge.py forges VXLAN and IP-in-IP packets) is a module of Debian's python, not a command.
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || missing+=(python3-scapy)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "vxtun: missing system packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "vxtun: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
