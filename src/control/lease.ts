// A node's lease in flannel's store layout: key <prefix>/subnets/10.17.1.0-24, value
// {"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}.
// Field names are flannel's (pkg/subnet LeaseAttrs, pkg/backend/vxlan vxlanLeaseAttrs) so both can share a network.
//
// One field is ours: "VxtunNodeName", the node's name, at the top level of the value. It says which node holds the
// lease independently of its address, so that a node whose PublicIP changed finds its lease again (flannel#760).
// flannel tolerates it: it decodes the value into its LeaseAttrs struct (pkg/lease/lease.go: PublicIP, PublicIPv6,
// BackendType, BackendData, BackendV6Data) with Go's encoding/json, which ignores unknown fields. It sits at the top level rather than in BackendData because it is not backend data: flannel's
// ipip and host-gw leases carry no BackendData, and a node's name outlives a change of backend. The "Vxtun" prefix
// keeps it clear of any field flannel may add later (Go matches field names case-insensitively, so a plain
// "NodeName" would be captured by a future flannel field of that name).

//
// Dual stack (flannel pkg/subnet/subnet.go MakeSubnetKey, LeaseAttrs): the key joins both subnets,
// <prefix>/subnets/10.244.1.0-24&fd00:10:244:1::-64, and the value adds "PublicIPv6" (null when the node has none, as
// flannel writes it) and "BackendV6Data" {"VNI","VtepMAC"} (the IPv6 VTEP). An IPv6-only lease keeps flannel's zero
// IPv4 part: MakeSubnetKey of an empty IP4Net gives "0.0.0.0-0&fd00:10:244:1::-64", and its PublicIP is "0.0.0.0".

import { Cidr, IPv4, Mac, formatCidr, formatIPv4, formatMac, parseIPv4, parseMac, prefixMask } from '../wire/address';
import { type Cidr6, type IPv6, formatIPv6, parseIPv6, prefixMask6 } from '../wire/address6';

export const DEFAULT_PREFIX = '/coreos.com/network';

/** Per-backend data: VNI and VtepMAC for vxlan; any other field a backend wrote is carried through untouched. */
export type BackendData = { vni?: number; vtepMac?: Mac } & Record<string, unknown>;

export interface LeaseAttrs {
  /** 0 (flannel's "0.0.0.0") in an IPv6-only lease. */
  publicIp: IPv4;
  /** The node's IPv6 underlay address ("PublicIPv6"); absent when the node has none (flannel writes null). */
  publicIpv6?: IPv6;
  backendType: string;
  backendData?: BackendData;
  /** The IPv6 VTEP's data ("BackendV6Data": VNI, VtepMAC), present in leases that carry an IPv6 subnet over vxlan. */
  backendV6Data?: BackendData;
  /** The holder's node name ("VxtunNodeName"); absent in leases flanneld (or an older vxtun) wrote. */
  nodeName?: string;
}

/** The JSON field that carries LeaseAttrs.nodeName (see the file comment for why it is safe next to flannel). */
export const NODE_NAME_FIELD = 'VxtunNodeName';

export interface Lease {
  /** The IPv4 subnet; 0.0.0.0/0 (NO_IPV4_SUBNET) in an IPv6-only lease, as flannel's key spells it. */
  subnet: Cidr;
  /** The IPv6 subnet of a dual-stack or IPv6-only lease (the key's "&fd00:10:244:1::-64"). */
  subnet6?: Cidr6;
  attrs: LeaseAttrs;
  /** Milliseconds since the epoch; absent when the key has no TTL (a reservation). */
  expiresAt?: number;
}

function trimSlashes(prefix: string): string {
  return prefix.replace(/\/+$/, '');
}

export function subnetsPrefix(prefix: string): string {
  return `${trimSlashes(prefix)}/subnets/`;
}

export function configKey(prefix: string): string {
  return `${trimSlashes(prefix)}/config`;
}

/** The IPv4 part of an IPv6-only lease: flannel's empty IP4Net. */
export const NO_IPV4_SUBNET: Cidr = Object.freeze({ address: 0, prefixLength: 0 });

/** Whether a lease subnet is a real IPv4 subnet (not the IPv6-only placeholder 0.0.0.0/0). */
export function hasIPv4Subnet(subnet: Cidr): boolean {
  return subnet.prefixLength !== 0;
}

/** The lease name, "10.17.1.0-24" or "10.244.1.0-24&fd00:10:244:1::-64" (flannel's MakeSubnetKey). */
export function subnetKeyName(cidr: Cidr, cidr6?: Cidr6): string {
  const v4 = `${formatIPv4(cidr.address)}-${cidr.prefixLength}`;
  return cidr6 === undefined ? v4 : `${v4}&${formatIPv6(cidr6.address)}-${cidr6.prefixLength}`;
}

/** Both subnets in words: "10.244.1.0/24", "10.244.1.0/24 and fd00:10:244:1::/64", or "fd00:10:244:1::/64" (IPv6 only). */
export function formatLeaseSubnets(subnet: Cidr, subnet6?: Cidr6): string {
  if (subnet6 === undefined) return formatCidr(subnet);
  const v6 = `${formatIPv6(subnet6.address)}/${subnet6.prefixLength}`;
  return hasIPv4Subnet(subnet) ? `${formatCidr(subnet)} and ${v6}` : v6;
}

/** "<prefix>/subnets/10.17.1.0-24", or with an IPv6 subnet "<prefix>/subnets/10.17.1.0-24&fd00:10:244:1::-64" */
export function subnetKey(prefix: string, cidr: Cidr, cidr6?: Cidr6): string {
  return `${subnetsPrefix(prefix)}${subnetKeyName(cidr, cidr6)}`;
}

// flannel's own pattern (pkg/subnet/subnet.go subnetRegex), anchored at both ends of the last path element.
const SUBNET_KEY = /(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&([a-fA-F\d:]+)-(\d{1,3}))?$/;

/** The subnet a lease key names, or undefined when the key is not a lease (or names no valid IPv4 subnet). */
export function parseSubnetKey(key: string): Cidr | undefined {
  return parseSubnetKeys(key)?.subnet;
}

/**
 * Both subnets a lease key names: `subnet` (0.0.0.0/0 in an IPv6-only key) and `subnet6` when the key has an
 * "&<ipv6>-<len>" part; undefined when the key is not a lease or either part is not a valid subnet (host bits set,
 * a prefix too long, an address that does not parse).
 */
export function parseSubnetKeys(key: string): { subnet: Cidr; subnet6?: Cidr6 } | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const match = SUBNET_KEY.exec(last);
  if (!match || match.index !== 0) return undefined;
  const prefixLength = Number(match[2]);
  if (prefixLength > 32) return undefined;
  let address: IPv4;
  try {
    address = parseIPv4(match[1]);
  } catch {
    return undefined;
  }
  if (((address & prefixMask(prefixLength)) >>> 0) !== address) return undefined;
  const subnet = { address, prefixLength };
  if (match[3] === undefined) return { subnet };
  const prefixLength6 = Number(match[4]);
  if (prefixLength6 > 128 || prefixLength6 === 0) return undefined;
  let address6: IPv6;
  try {
    address6 = parseIPv6(match[3]);
  } catch {
    return undefined;
  }
  if ((address6 & prefixMask6(prefixLength6)) !== address6) return undefined;
  return { subnet, subnet6: { address: address6, prefixLength: prefixLength6 } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses a lease value; throws an Error naming the bad field and value. */
export function parseLeaseAttrs(json: string): LeaseAttrs {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new Error(`lease value is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw new Error(`lease value must be a JSON object, got ${JSON.stringify(doc)}`);
  const publicIp = doc.PublicIP;
  if (typeof publicIp !== 'string') throw new Error(`lease PublicIP must be an IPv4 address string, got ${JSON.stringify(publicIp)}`);
  let ip: IPv4;
  try {
    ip = parseIPv4(publicIp);
  } catch {
    throw new Error(`lease PublicIP ${JSON.stringify(publicIp)} is not an IPv4 address`);
  }
  const backendType = doc.BackendType ?? '';
  if (typeof backendType !== 'string') throw new Error(`lease BackendType must be a string, got ${JSON.stringify(backendType)}`);
  const attrs: LeaseAttrs = { publicIp: ip, backendType };
  const publicIpv6 = doc.PublicIPv6;
  if (publicIpv6 !== undefined && publicIpv6 !== null) {
    if (typeof publicIpv6 !== 'string') throw new Error(`lease PublicIPv6 must be an IPv6 address string or null, got ${JSON.stringify(publicIpv6)}`);
    try {
      attrs.publicIpv6 = parseIPv6(publicIpv6);
    } catch {
      throw new Error(`lease PublicIPv6 ${JSON.stringify(publicIpv6)} is not an IPv6 address`);
    }
  }
  const data = doc.BackendData;
  if (data !== undefined && data !== null) {
    if (!isObject(data)) throw new Error(`lease BackendData must be an object, got ${JSON.stringify(data)}`);
    attrs.backendData = parseBackendData(data, 'BackendData');
  }
  const data6 = doc.BackendV6Data;
  if (data6 !== undefined && data6 !== null) {
    if (!isObject(data6)) throw new Error(`lease BackendV6Data must be an object, got ${JSON.stringify(data6)}`);
    attrs.backendV6Data = parseBackendData(data6, 'BackendV6Data');
  }
  const nodeName = doc[NODE_NAME_FIELD];
  if (nodeName !== undefined && nodeName !== null) {
    if (typeof nodeName !== 'string' || nodeName === '') {
      throw new Error(`lease ${NODE_NAME_FIELD} must be a non-empty string, got ${JSON.stringify(nodeName)}`);
    }
    attrs.nodeName = nodeName;
  }
  return attrs;
}

function parseBackendData(data: Record<string, unknown>, name: string): BackendData {
  const out: BackendData = {};
  for (const key of Object.keys(data)) {
    const value = data[key];
    if (key === 'VNI') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffff) {
        throw new Error(`lease ${name}.VNI must be an integer from 0 to 16777215, got ${JSON.stringify(value)}`);
      }
      out.vni = value;
    } else if (key === 'VtepMAC') {
      if (typeof value !== 'string') throw new Error(`lease ${name}.VtepMAC must be a MAC string, got ${JSON.stringify(value)}`);
      try {
        out.vtepMac = parseMac(value);
      } catch {
        throw new Error(`lease ${name}.VtepMAC ${JSON.stringify(value)} is not a MAC address`);
      }
    } else {
      out[key] = value;
    }
  }
  return out;
}

function formatBackendData(data: BackendData): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (data.vni !== undefined) out.VNI = data.vni;
  if (data.vtepMac !== undefined) out.VtepMAC = formatMac(data.vtepMac);
  for (const key of Object.keys(data)) {
    if (key !== 'vni' && key !== 'vtepMac' && key !== 'VNI' && key !== 'VtepMAC') out[key] = data[key];
  }
  return out;
}

/**
 * Writes a lease value in flannel's field order (PublicIP, PublicIPv6, BackendType, BackendData, BackendV6Data);
 * BackendType and the backend data are omitted when empty, as in flannel, and so is PublicIPv6 when the node has none
 * (flannel writes null there; both read the same).
 */
export function formatLeaseAttrs(attrs: LeaseAttrs): string {
  const doc: Record<string, unknown> = { PublicIP: formatIPv4(attrs.publicIp) };
  if (attrs.publicIpv6 !== undefined) doc.PublicIPv6 = formatIPv6(attrs.publicIpv6);
  if (attrs.backendType !== '') doc.BackendType = attrs.backendType;
  if (attrs.backendData !== undefined) doc.BackendData = formatBackendData(attrs.backendData);
  if (attrs.backendV6Data !== undefined) doc.BackendV6Data = formatBackendData(attrs.backendV6Data);
  if (attrs.nodeName !== undefined) doc[NODE_NAME_FIELD] = attrs.nodeName;
  return JSON.stringify(doc);
}

export function leaseAttrsEqual(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return formatLeaseAttrs(a) === formatLeaseAttrs(b);
}

/**
 * Whether a lease value written by `holder` is held by the node `self`: the same node name and PublicIP when the
 * value names a node; the same PublicIP when it does not (flannel's rule, for leases flanneld wrote). A value with our
 * name and another PublicIP is another live process using our name (or our own previous address, which acquire
 * rewrites before keeping starts).
 */
export function isHeldBy(holder: LeaseAttrs, self: LeaseAttrs): boolean {
  if (holder.nodeName !== undefined) return holder.nodeName === self.nodeName && samePublicAddress(holder, self);
  return samePublicAddress(holder, self);
}

/**
 * Whether two lease values name the same node address: the same PublicIP (flannel's findLeaseByIP), or, in IPv6-only
 * leases (PublicIP 0.0.0.0 on every node), the same PublicIPv6.
 */
export function samePublicAddress(a: LeaseAttrs, b: LeaseAttrs): boolean {
  if (a.publicIp !== 0 || b.publicIp !== 0) return a.publicIp === b.publicIp;
  return a.publicIpv6 !== undefined && a.publicIpv6 === b.publicIpv6;
}

/** Whether two IPv6 subnets share any address (one contains the other). */
export function subnets6Overlap(a: Cidr6, b: Cidr6): boolean {
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return (longer.address & prefixMask6(shorter.prefixLength)) === shorter.address;
}

/** Whether two subnets share any address (one contains the other). */
export function subnetsOverlap(a: Cidr, b: Cidr): boolean {
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return ((longer.address & prefixMask(shorter.prefixLength)) >>> 0) === shorter.address;
}
