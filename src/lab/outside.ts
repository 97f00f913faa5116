// An "outside" host for the lab: something beyond the cluster network, the way the internet is beyond a Kubernetes
// cluster. Its own namespace `<lab>-out` on the underlay bridge, with an address from another documentation range
// (198.51.100.0/24 by default) and an on-link route back to the underlay: a node that routes the range onto its eth0
// (routeToOutside) reaches it, and pods behind that node reach it only through the node's masquerade.
// In a lab with an IPv6 underlay it also has an IPv6 address from 2001:db8:ff::/64 (RFC 3849 documentation range, apart
// from the underlay's), with an on-link route back to the IPv6 underlay: the IPv6 masquerade is checked the same way.
import { parseCidr, formatIPv4 } from '../wire/address';
import { formatIPv6, parseCidr6 } from '../wire/address6';
import { run } from './shell';
import { enableIPv6 } from './topology';
import type { InNamespace, Lab, LabNode } from './topology';

export const OUTSIDE_SUBNET = '198.51.100.0/24';
/** The outside host's IPv6 range in labs with an IPv6 underlay (host ::1). */
export const OUTSIDE_SUBNET6 = '2001:db8:ff::/64';

export interface OutsideHost extends InNamespace {
  netns: string;
  /** Its address, e.g. 198.51.100.1. */
  address: string;
  subnet: string;
  /** Its IPv6 address (labs with an IPv6 underlay), e.g. 2001:db8:ff::1. */
  address6?: string;
  subnet6?: string;
}

/** Makes the outside host (one per lab): a veth from the hub bridge into `<lab>-out`, host .1 of `subnet`. */
export async function addOutsideHost(lab: Lab, subnet = OUTSIDE_SUBNET): Promise<OutsideHost> {
  const cidr = parseCidr(subnet);
  const address = formatIPv4(cidr.address + 1);
  const netns = await lab.addNamespace('out');
  await run('ip', ['-n', lab.hubNetns, 'link', 'add', 'out', 'mtu', String(lab.mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(lab.mtu), 'netns', netns]);
  await run('ip', ['-n', lab.hubNetns, 'link', 'set', 'out', 'master', 'br0', 'up']);
  await run('ip', ['-n', netns, 'addr', 'add', `${address}/${cidr.prefixLength}`, 'dev', 'eth0']);
  await run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', netns, 'route', 'add', `${lab.underlay}/${lab.prefixLength}`, 'dev', 'eth0']);
  const host: OutsideHost = { netns, address, subnet: `${formatIPv4(cidr.address)}/${cidr.prefixLength}` };
  if (lab.underlay6 !== undefined) {
    const cidr6 = parseCidr6(OUTSIDE_SUBNET6);
    host.address6 = formatIPv6(cidr6.address + 1n);
    host.subnet6 = OUTSIDE_SUBNET6;
    await enableIPv6(netns, false);
    await run('ip', ['-n', netns, '-6', 'addr', 'add', `${host.address6}/${cidr6.prefixLength}`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', netns, '-6', 'route', 'add', `${lab.underlay6}/${lab.prefixLength6}`, 'dev', 'eth0']);
  }
  return host;
}

/** Routes the outside range from `node` onto its underlay link (on-link: the outside host is on the same bridge). */
export async function routeToOutside(lab: Lab, node: LabNode, outside: OutsideHost): Promise<void> {
  await lab.exec(node, 'ip', ['route', 'replace', outside.subnet, 'dev', node.underlayDev]);
  if (outside.subnet6 !== undefined && node.underlayIp6 !== undefined) {
    await lab.exec(node, 'ip', ['-6', 'route', 'replace', outside.subnet6, 'dev', node.underlayDev]);
  }
}
