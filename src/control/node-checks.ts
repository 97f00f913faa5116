// What a node must have for pods to use the overlay, said rather than assumed. A pod's packets reach vxtun0 (or, with
// host-gw, the underlay) only by being forwarded from the pod bridge cni0: with net.ipv4.ip_forward=0 the kernel drops
// them. The CNI bridge plugin turns forwarding on when it attaches a pod with isGateway (flannel's delegate has it);
// flanneld itself does not, and kubeadm's preflight insists on it. FACTS.md, "Pods and the CNI contract".
import { readFileSync } from 'node:fs';

export const IP_FORWARD_PATH = '/proc/sys/net/ipv4/ip_forward';
export const IP_FORWARD_FIX = 'sysctl -w net.ipv4.ip_forward=1';

/** True / false from /proc/sys/net/ipv4/ip_forward (of this network namespace); undefined when unreadable. */
export function readIpForward(path = IP_FORWARD_PATH): boolean | undefined {
  try {
    return readFileSync(path, 'utf8').trim() !== '0';
  } catch {
    return undefined;
  }
}

/** The sentence the agent logs at start, and status repeats, while forwarding is off. */
export function ipForwardWarning(): string {
  return `IP forwarding is off (net.ipv4.ip_forward=0): pods cannot reach the overlay or anything beyond this node; turn it on with \`${IP_FORWARD_FIX}\` (the CNI bridge plugin also does when it attaches the first pod)`;
}

/** IPv6 pods need IPv6 forwarding (the bridge plugin with isGateway turns it on for IPv6 ranges too). */
export const IPV6_FORWARD_PATH = '/proc/sys/net/ipv6/conf/all/forwarding';
export const IPV6_FORWARD_FIX = 'sysctl -w net.ipv6.conf.all.forwarding=1';

/** True / false from net.ipv6.conf.all.forwarding (of this network namespace); undefined when unreadable (no IPv6). */
export function readIpv6Forward(path = IPV6_FORWARD_PATH): boolean | undefined {
  return readIpForward(path);
}

/** The sentence for a dual-stack node whose IPv6 forwarding is off. */
export function ipv6ForwardWarning(): string {
  return `IPv6 forwarding is off (net.ipv6.conf.all.forwarding=0): IPv6 pods cannot reach the overlay; turn it on with \`${IPV6_FORWARD_FIX}\` (the CNI bridge plugin also does when it attaches the first pod with an IPv6 range)`;
}
