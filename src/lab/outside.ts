// An "outside" host for the lab: something beyond the cluster network, the way the internet is beyond a Kubernetes
// cluster. Its own namespace `<lab>-out` on the underlay bridge, with an address from another documentation range
// (198.51.100.0/24 by default) and an on-link route back to the underlay: a node that routes the range onto its eth0
// (routeToOutside) reaches it, and pods behind that node reach it only through the node's masquerade.
import { parseCidr, formatIPv4 } from '../wire/address';
import { run } from './shell';
import type { InNamespace, Lab, LabNode } from './topology';

export const OUTSIDE_SUBNET = '198.51.100.0/24';

export interface OutsideHost extends InNamespace {
  netns: string;
  /** Its address, e.g. 198.51.100.1. */
  address: string;
  subnet: string;
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
  return { netns, address, subnet: `${formatIPv4(cidr.address)}/${cidr.prefixLength}` };
}

/** Routes the outside range from `node` onto its underlay link (on-link: the outside host is on the same bridge). */
export async function routeToOutside(lab: Lab, node: LabNode, outside: OutsideHost): Promise<void> {
  await lab.exec(node, 'ip', ['route', 'replace', outside.subnet, 'dev', node.underlayDev]);
}
