// A node whose overlay is Linux's own VXLAN device, programmed the way flannel's vxlan backend programs it
// (flannel pkg/backend/vxlan: device.go creates the VTEP, vxlan_network.go adds one neighbor, one FDB entry and one
// route per remote lease). vxtun must interoperate with exactly this, so the lab reproduces it with iproute2.

import { formatIPv4, formatMac, parseCidr, parseIPv4, parseMac, type Cidr } from '../wire/address';
import { formatCidr6, formatIPv6, parseCidr6, parseIPv6 } from '../wire/address6';
import type { Lab, LabNode } from './topology';

/** flannel's default: the kernel's VXLAN port, not IANA's 4789. */
export const FLANNEL_VXLAN_PORT = 8472;
/** Outer IPv4 + UDP + VXLAN + inner Ethernet. */
export const VXLAN_OVERHEAD = 50;

export interface KernelVtepOptions {
  vni: number;
  /** UDP destination port; default 8472. */
  port?: number;
  /** The VTEP's MAC, e.g. '0e:00:00:00:01:00' (flannel: random, locally administered). */
  vtepMac: string;
  /** The node's lease network address, e.g. '10.17.1.0' (or the lease '10.17.1.0/24'): the device gets it as /32. */
  address: string;
  /** Default: the lab's underlay MTU - 50. */
  mtu?: number;
}

export interface KernelVtep {
  node: LabNode;
  device: string;
  vni: number;
  port: number;
  vtepMac: string;
  address: string;
  mtu: number;
}

export interface KernelPeer {
  /** The remote node's lease, e.g. '10.17.2.0/24'. */
  subnet: string;
  /** The remote VTEP's MAC. */
  vtepMac: string;
  /** The remote node's underlay address. */
  publicIp: string;
  vni: number;
}

export function kernelVtepName(vni: number): string {
  return `flannel.${vni}`;
}

function checkVni(vni: number): void {
  if (!Number.isInteger(vni) || vni < 0 || vni >= 1 << 24) throw new Error(`invalid VNI ${vni}: must be 0-16777215`);
}

/** Canonical lower-case MAC text, after validation. */
function canonicalMac(text: string): string {
  return formatMac(parseMac(text));
}

function leaseAddress(text: string): string {
  const slash = text.indexOf('/');
  return formatIPv4(slash < 0 ? parseIPv4(text) : parseCidr(text, true).address);
}

export async function createKernelVtep(lab: Lab, node: LabNode, options: KernelVtepOptions): Promise<KernelVtep> {
  checkVni(options.vni);
  const vtep: KernelVtep = {
    node,
    device: kernelVtepName(options.vni),
    vni: options.vni,
    port: options.port ?? FLANNEL_VXLAN_PORT,
    vtepMac: canonicalMac(options.vtepMac),
    address: leaseAddress(options.address),
    mtu: options.mtu ?? lab.mtu - VXLAN_OVERHEAD,
  };
  const ip = (...args: string[]) => lab.exec(node, 'ip', args);
  // As flannel: bound to the underlay device and address, no learning (the agent programs every entry itself).
  await ip('link', 'add', vtep.device, 'address', vtep.vtepMac, 'mtu', String(vtep.mtu), 'type', 'vxlan',
    'id', String(vtep.vni), 'local', node.underlayIp, 'dev', node.underlayDev, 'dstport', String(vtep.port), 'nolearning');
  // flannel also turns off IPv6 router advertisements on the device; the lab has no IPv6 routers, so it is not needed.
  await ip('addr', 'add', `${vtep.address}/32`, 'dev', vtep.device);
  await ip('link', 'set', vtep.device, 'up');
  return vtep;
}

export async function deleteKernelVtep(lab: Lab, node: LabNode, vni: number): Promise<void> {
  checkVni(vni);
  await lab.exec(node, 'ip', ['link', 'del', kernelVtepName(vni)]);
}

interface PeerEntries {
  device: string;
  subnet: Cidr;
  gateway: string; // the remote lease's .0, which is the remote VTEP's address
  mac: string;
  publicIp: string;
}

function peerEntries(peer: KernelPeer): PeerEntries {
  checkVni(peer.vni);
  const subnet = parseCidr(peer.subnet);
  parseIPv4(peer.publicIp); // validates
  return {
    device: kernelVtepName(peer.vni),
    subnet,
    gateway: formatIPv4(subnet.address),
    mac: canonicalMac(peer.vtepMac),
    publicIp: peer.publicIp,
  };
}

/**
 * Programs one remote lease in flannel's order: neighbor, FDB, then the route (the route last, or the kernel would
 * ARP for the gateway before its neighbor entry exists). flannel sets each with netlink NeighSet / RouteReplace,
 * i.e. create-or-replace, so this uses `replace` too: re-adding a lease whose VTEP moved updates it in place.
 */
export async function addKernelPeer(lab: Lab, node: LabNode, peer: KernelPeer): Promise<void> {
  const entry = peerEntries(peer);
  const subnet = `${formatIPv4(entry.subnet.address)}/${entry.subnet.prefixLength}`;
  await lab.exec(node, 'ip', ['neigh', 'replace', entry.gateway, 'lladdr', entry.mac, 'dev', entry.device, 'nud', 'permanent']);
  await lab.exec(node, 'bridge', ['fdb', 'replace', entry.mac, 'dev', entry.device, 'dst', entry.publicIp, 'self', 'permanent']);
  await lab.exec(node, 'ip', ['route', 'replace', subnet, 'via', entry.gateway, 'dev', entry.device, 'onlink']);
}

/**
 * Removes what addKernelPeer made, in reverse (route first, so nothing is routed to a gateway without a neighbor).
 * Like flannel, tries every entry even when one fails, then reports the failures together.
 */
export async function removeKernelPeer(lab: Lab, node: LabNode, peer: KernelPeer): Promise<void> {
  const entry = peerEntries(peer);
  const subnet = `${formatIPv4(entry.subnet.address)}/${entry.subnet.prefixLength}`;
  const steps: Array<[string, string[]]> = [
    ['ip', ['route', 'del', subnet, 'via', entry.gateway, 'dev', entry.device, 'onlink']],
    ['bridge', ['fdb', 'del', entry.mac, 'dev', entry.device, 'dst', entry.publicIp, 'self']],
    ['ip', ['neigh', 'del', entry.gateway, 'dev', entry.device]],
  ];
  const failures: string[] = [];
  for (const [cmd, args] of steps) {
    try {
      await lab.exec(node, cmd, args);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  }
  if (failures.length > 0) throw new Error(`removing kernel VXLAN peer ${peer.subnet} failed:\n${failures.join('\n')}`);
}

/**
 * `ethtool -K <dev> tx off`. A kernel VTEP over veth may send inner TCP/UDP with a partial checksum (CHECKSUM_PARTIAL
 * never completed on the wire): another kernel accepts it, a user-space receiver sees "cksum incorrect" and TCP never
 * connects while ping works (FACTS.md, Known field problems; calico#3145, kubernetes#88986, flannel#1243). flannel
 * documents this workaround; mixed kernel / vxtun labs need it on the kernel side.
 */
export async function disableTxChecksumOffload(lab: Lab, node: LabNode, device: string): Promise<void> {
  await lab.exec(node, 'ethtool', ['-K', device, 'tx', 'off']);
}

// ---- IPv6: flannel's second device (pkg/backend/vxlan/vxlan.go RegisterNetwork with EnableIPv6) -------------------

/** Outer IPv6 (40) + UDP + VXLAN + inner Ethernet: flannel cuts the v6 device's MTU by this from the underlay's. */
export const VXLAN_OVERHEAD6 = 70;

export interface KernelVtep6Options {
  vni: number;
  /** UDP destination port; default 8472. */
  port?: number;
  /** The v6 VTEP's own MAC (flannel: a second random MAC, published as BackendV6Data.VtepMAC). */
  vtepMac: string;
  /** The node's IPv6 lease, e.g. 'fd00:10:244:1::/64' (or its address): the device gets `<subnet>::/128`. */
  address: string;
  /** The local underlay address; default the node's underlayIp6 (the lab must have an IPv6 underlay). */
  local?: string;
  /** Default: the lab's underlay MTU - 70. */
  mtu?: number;
}

export interface KernelVtep6 {
  node: LabNode;
  device: string;
  vni: number;
  port: number;
  vtepMac: string;
  /** The device's address: the IPv6 lease's subnet address ('fd00:10:244:1::'). */
  address: string;
  local: string;
  mtu: number;
}

export interface KernelPeer6 {
  /** The remote node's IPv6 lease, e.g. 'fd00:10:244:2::/64'. */
  subnet: string;
  /** The remote node's v6 VTEP MAC (its BackendV6Data.VtepMAC). */
  vtepMac: string;
  /** The remote node's PublicIPv6. */
  publicIpv6: string;
  vni: number;
}

/** flannel's name for the IPv6 VTEP: `flannel-v6.<VNI>`. */
export function kernelVtep6Name(vni: number): string {
  return `flannel-v6.${vni}`;
}

function leaseAddress6(text: string): string {
  return formatIPv6(text.includes('/') ? parseCidr6(text, true).address : parseIPv6(text));
}

/**
 * Makes the `flannel-v6.<VNI>` device as flanneld does with EnableIPv6: a vxlan device whose `local` is the node's
 * IPv6 underlay address (so it sends and receives VXLAN over IPv6), no learning, and the lease's `<subnet>::/128`
 * (flannel: ConfigureIPv6 with PrefixLen 128, the source for host-to-pod traffic), then up.
 */
export async function createKernelVtep6(lab: Lab, node: LabNode, options: KernelVtep6Options): Promise<KernelVtep6> {
  checkVni(options.vni);
  const local = options.local ?? node.underlayIp6;
  if (local === undefined) throw new Error(`node ${node.name} has no IPv6 underlay address: make the lab with underlay6`);
  const vtep: KernelVtep6 = {
    node,
    device: kernelVtep6Name(options.vni),
    vni: options.vni,
    port: options.port ?? FLANNEL_VXLAN_PORT,
    vtepMac: canonicalMac(options.vtepMac),
    address: leaseAddress6(options.address),
    local: formatIPv6(parseIPv6(local)),
    mtu: options.mtu ?? lab.mtu - VXLAN_OVERHEAD6,
  };
  const ip = (...args: string[]) => lab.exec(node, 'ip', args);
  await ip('link', 'add', vtep.device, 'address', vtep.vtepMac, 'mtu', String(vtep.mtu), 'type', 'vxlan',
    'id', String(vtep.vni), 'local', vtep.local, 'dev', node.underlayDev, 'dstport', String(vtep.port), 'nolearning');
  await ip('-6', 'addr', 'add', `${vtep.address}/128`, 'dev', vtep.device, 'nodad');
  await ip('link', 'set', vtep.device, 'up');
  return vtep;
}

interface PeerEntries6 {
  device: string;
  subnet: string;
  gateway: string; // the remote IPv6 lease's subnet address, which is the remote v6 VTEP's address
  mac: string;
  publicIpv6: string;
}

function peerEntries6(peer: KernelPeer6): PeerEntries6 {
  checkVni(peer.vni);
  const subnet = parseCidr6(peer.subnet);
  return {
    device: kernelVtep6Name(peer.vni),
    subnet: formatCidr6(subnet),
    gateway: formatIPv6(subnet.address),
    mac: canonicalMac(peer.vtepMac),
    publicIpv6: formatIPv6(parseIPv6(peer.publicIpv6)),
  };
}

/**
 * One remote IPv6 lease, in flannel's order (pkg/backend/vxlan/vxlan_network.go, the v6 branch of handleSubnetEvents):
 * neighbor `<subnet>:: lladdr <v6 VtepMAC> nud permanent`, FDB `<v6 VtepMAC> dst <PublicIPv6>`, then the route
 * `<subnet> via <subnet>:: dev flannel-v6.<VNI> onlink`. Create-or-replace, as flannel's NeighSet / RouteReplace.
 */
export async function addKernelPeer6(lab: Lab, node: LabNode, peer: KernelPeer6): Promise<void> {
  const e = peerEntries6(peer);
  await lab.exec(node, 'ip', ['-6', 'neigh', 'replace', e.gateway, 'lladdr', e.mac, 'dev', e.device, 'nud', 'permanent']);
  await lab.exec(node, 'bridge', ['fdb', 'replace', e.mac, 'dev', e.device, 'dst', e.publicIpv6, 'self', 'permanent']);
  await lab.exec(node, 'ip', ['-6', 'route', 'replace', e.subnet, 'via', e.gateway, 'dev', e.device, 'onlink']);
}

/** Removes what addKernelPeer6 made, route first; tries every entry and reports the failures together. */
export async function removeKernelPeer6(lab: Lab, node: LabNode, peer: KernelPeer6): Promise<void> {
  const e = peerEntries6(peer);
  const steps: Array<[string, string[]]> = [
    ['ip', ['-6', 'route', 'del', e.subnet, 'via', e.gateway, 'dev', e.device, 'onlink']],
    ['bridge', ['fdb', 'del', e.mac, 'dev', e.device, 'dst', e.publicIpv6, 'self']],
    ['ip', ['-6', 'neigh', 'del', e.gateway, 'dev', e.device]],
  ];
  const failures: string[] = [];
  for (const [cmd, args] of steps) {
    try {
      await lab.exec(node, cmd, args);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  }
  if (failures.length > 0) throw new Error(`removing kernel VXLAN IPv6 peer ${peer.subnet} failed:\n${failures.join('\n')}`);
}
