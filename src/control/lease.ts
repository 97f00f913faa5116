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

import { Cidr, IPv4, Mac, formatIPv4, formatMac, parseIPv4, parseMac, prefixMask } from '../wire/address';

export const DEFAULT_PREFIX = '/coreos.com/network';

/** Per-backend data: VNI and VtepMAC for vxlan; any other field a backend wrote is carried through untouched. */
export type BackendData = { vni?: number; vtepMac?: Mac } & Record<string, unknown>;

export interface LeaseAttrs {
  publicIp: IPv4;
  backendType: string;
  backendData?: BackendData;
  /** The holder's node name ("VxtunNodeName"); absent in leases flanneld (or an older vxtun) wrote. */
  nodeName?: string;
}

/** The JSON field that carries LeaseAttrs.nodeName (see the file comment for why it is safe next to flannel). */
export const NODE_NAME_FIELD = 'VxtunNodeName';

export interface Lease {
  subnet: Cidr;
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

/** "<prefix>/subnets/10.17.1.0-24" */
export function subnetKey(prefix: string, cidr: Cidr): string {
  return `${subnetsPrefix(prefix)}${formatIPv4(cidr.address)}-${cidr.prefixLength}`;
}

// flannel's own pattern, anchored at the end; a dual-stack key carries "&<ipv6>-<len>", which we accept and ignore.
const SUBNET_KEY = /(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&[a-fA-F\d:]+-\d{1,3})?$/;

/** The subnet a lease key names, or undefined when the key is not a lease (or names no valid IPv4 subnet). */
export function parseSubnetKey(key: string): Cidr | undefined {
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
  return { address, prefixLength };
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
  const data = doc.BackendData;
  if (data !== undefined && data !== null) {
    if (!isObject(data)) throw new Error(`lease BackendData must be an object, got ${JSON.stringify(data)}`);
    attrs.backendData = parseBackendData(data);
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

function parseBackendData(data: Record<string, unknown>): BackendData {
  const out: BackendData = {};
  for (const key of Object.keys(data)) {
    const value = data[key];
    if (key === 'VNI') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffff) {
        throw new Error(`lease BackendData.VNI must be an integer from 0 to 16777215, got ${JSON.stringify(value)}`);
      }
      out.vni = value;
    } else if (key === 'VtepMAC') {
      if (typeof value !== 'string') throw new Error(`lease BackendData.VtepMAC must be a MAC string, got ${JSON.stringify(value)}`);
      try {
        out.vtepMac = parseMac(value);
      } catch {
        throw new Error(`lease BackendData.VtepMAC ${JSON.stringify(value)} is not a MAC address`);
      }
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** Writes a lease value in flannel's field order; BackendType and BackendData are omitted when empty, as in flannel. */
export function formatLeaseAttrs(attrs: LeaseAttrs): string {
  const doc: Record<string, unknown> = { PublicIP: formatIPv4(attrs.publicIp) };
  if (attrs.backendType !== '') doc.BackendType = attrs.backendType;
  const data = attrs.backendData;
  if (data !== undefined) {
    const out: Record<string, unknown> = {};
    if (data.vni !== undefined) out.VNI = data.vni;
    if (data.vtepMac !== undefined) out.VtepMAC = formatMac(data.vtepMac);
    for (const key of Object.keys(data)) {
      if (key !== 'vni' && key !== 'vtepMac' && key !== 'VNI' && key !== 'VtepMAC') out[key] = data[key];
    }
    doc.BackendData = out;
  }
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
  if (holder.nodeName !== undefined) return holder.nodeName === self.nodeName && holder.publicIp === self.publicIp;
  return holder.publicIp === self.publicIp;
}

/** Whether two subnets share any address (one contains the other). */
export function subnetsOverlap(a: Cidr, b: Cidr): boolean {
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return ((longer.address & prefixMask(shorter.prefixLength)) >>> 0) === shorter.address;
}
