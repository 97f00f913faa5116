// The network config that flannel keeps at <prefix>/config, parsed with flannel's defaults and checks
// (pkg/subnet/config.go CheckNetworkConfig, pkg/backend/vxlan, pkg/backend/ipip), so that one JSON document means
// the same network to flanneld and to vxtun. Dual stack as flannel has it (EnableIPv4, EnableIPv6, IPv6Network,
// IPv6SubnetLen, IPv6SubnetMin/Max: pkg/subnet/config.go, Documentation/configuration.md). The `bgp` backend is
// vxtun's (Calico's BGP mode driven by bird2, docs/bgp.md); flanneld does not know it.

import { Cidr, IPv4, cidrContains, formatCidr, formatIPv4, parseCidr, parseIPv4, prefixMask } from '../wire/address';
import { type Cidr6, type IPv6, cidr6Contains, formatCidr6, formatIPv6, parseCidr6, parseIPv6, prefixMask6 } from '../wire/address6';
import { unusablePodNetwork, unusablePodNetwork6 } from './special-addresses';

export type BackendConfig =
  | { type: 'vxlan'; vni: number; port: number; directRouting: boolean; mtu?: number }
  | { type: 'ipip'; directRouting: boolean }
  | { type: 'host-gw' }
  | BgpBackendConfig;

/**
 * Calico's BGP mode: BIRD announces each node's lease over iBGP. `encap`: 'none' (kernel routes via the owning node,
 * Calico ipipMode Never), 'ipip' (routes from BGP, packets in vxtun's IP-in-IP; Always), 'ipip-crosssubnet' (direct on
 * our underlay subnet, IP-in-IP across; CrossSubnet). Defaults are Calico's (bgpconfig docs, bird.cfg.template).
 */
export interface BgpBackendConfig {
  type: 'bgp';
  /** Our AS number, the same on every node (iBGP). Calico's default 64512. */
  as: number;
  encap: BgpEncap;
  /** Empty: full iBGP mesh. Otherwise each node peers only with these underlay addresses. */
  routeReflectors: IPv4[];
  /** BGP graceful restart time in seconds (RFC 4724: 12 bits, at most 4095); 0 turns it off. BIRD's default 120. */
  gracefulRestart: number;
  /** Bidirectional forwarding detection on every session (BIRD's defaults there: 100 ms x 5 here, docs/bgp.md). */
  bfd: boolean;
}

export type BgpEncap = 'none' | 'ipip' | 'ipip-crosssubnet';
export const BGP_ENCAPS: readonly BgpEncap[] = ['none', 'ipip', 'ipip-crosssubnet'];
/** Calico's default AS (bgpconfig asNumber). */
export const DEFAULT_BGP_AS = 64512;
/** BIRD's default restart time, which Calico keeps (graceful restart on). */
export const DEFAULT_GRACEFUL_RESTART_SECONDS = 120;
/** RFC 4724: the restart time is a 12-bit field. */
const MAX_GRACEFUL_RESTART_SECONDS = 4095;
/** RFC 6793 AS_TRANS: a placeholder for 4-byte AS numbers on the wire, never a real AS. */
const AS_TRANS = 23456;

export type BackendType = BackendConfig['type'];

/** The IPv6 half of a dual-stack (or IPv6-only) network: flannel's IPv6Network, IPv6SubnetLen, IPv6SubnetMin/Max. */
export interface Ipv6NetworkConfig {
  /** e.g. fd00:10:244::/56 */
  network: Cidr6;
  /** Prefix length of each node's IPv6 lease (flannel's default 64). */
  subnetLen: number;
  /** Network address of the lowest and highest IPv6 subnet that may be leased. */
  subnetMin: IPv6;
  subnetMax: IPv6;
}

export interface NetworkConfig {
  /**
   * false: an IPv6-only network (flannel's `"EnableIPv4": false`). Then `network`, `subnetLen`, `subnetMin` and
   * `subnetMax` hold flannel's zero values (0.0.0.0/0, 0) and mean nothing; absent or true: IPv4 is carried.
   */
  enableIPv4?: boolean;
  network: Cidr;
  /** Prefix length of each node's lease. */
  subnetLen: number;
  /** Network address of the lowest and highest subnet that may be leased. */
  subnetMin: IPv4;
  subnetMax: IPv4;
  /** Present exactly when the network carries IPv6 (flannel's `"EnableIPv6": true`). */
  ipv6?: Ipv6NetworkConfig;
  backend: BackendConfig;
}

/** Whether the network carries IPv4 (everything but an IPv6-only network). */
export function carriesIPv4(config: NetworkConfig): boolean {
  return config.enableIPv4 !== false;
}

export const SUPPORTED_BACKENDS: readonly BackendType[] = ['vxlan', 'ipip', 'host-gw', 'bgp'];
/**
 * The backends that carry IPv6. vxlan: as flannel's (a second VTEP for IPv6, BackendV6Data); host-gw: routes via the
 * lease's PublicIPv6, as flannel's. ipip (IPv6 in IPv4 is IP protocol 41, not 4) and bgp (bird2 config is IPv4) do not.
 */
export const IPV6_BACKENDS: readonly BackendType[] = ['vxlan', 'host-gw'];
/** flannel's IPv6SubnetLen when the network is a /62 or larger. */
export const DEFAULT_IPV6_SUBNET_LEN = 64;
/** RFC 8200 section 5: every IPv6 link carries at least 1280-byte packets. */
export const IPV6_MIN_MTU = 1280;
export const DEFAULT_VNI = 1;
/** Linux's VXLAN port when none is given; flannel leaves Port 0 to the kernel, so flannel nodes use it. */
export const DEFAULT_VXLAN_PORT = 8472;
/** flannel's Backend.Type when the Backend object is absent. */
const FLANNEL_DEFAULT_BACKEND = 'udp';
const MAX_VNI = 0xffffff;

/** A config the checks refused; `detail` is the message without the "network config: " lead, for re-wording. */
export class NetworkConfigError extends Error {
  constructor(message: string, readonly detail: string) {
    super(message);
    this.name = 'NetworkConfigError';
  }
}

function fail(detail: string): never {
  throw new NetworkConfigError(`network config: ${detail}`, detail);
}

function show(value: unknown): string {
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Go's encoding/json matches field names case-insensitively (exact match first); flanneld accepts "network". */
function field(obj: JsonObject, name: string): unknown {
  if (Object.prototype.hasOwnProperty.call(obj, name)) return obj[name];
  const lower = name.toLowerCase();
  for (const key of Object.keys(obj)) if (key.toLowerCase() === lower) return obj[key];
  return undefined;
}

function integerField(obj: JsonObject, name: string, label: string, min: number, max: number): number | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${label} must be an integer from ${min} to ${max}, got ${show(value)}`);
  }
  return value;
}

function booleanField(obj: JsonObject, name: string, label: string): boolean | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') fail(`${label} must be true or false, got ${show(value)}`);
  return value;
}

function ipv4Field(obj: JsonObject, name: string): IPv4 | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') fail(`${name} must be an IPv4 address string, got ${show(value)}`);
  try {
    return parseIPv4(value);
  } catch {
    return fail(`${name} ${show(value)} is not an IPv4 address`);
  }
}

function ipv6Field(obj: JsonObject, name: string): IPv6 | undefined {
  const value = field(obj, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') fail(`${name} must be an IPv6 address string, got ${show(value)}`);
  try {
    return parseIPv6(value);
  } catch {
    return fail(`${name} ${show(value)} is not an IPv6 address`);
  }
}

function parseNetwork(obj: JsonObject): Cidr {
  const value = field(obj, 'Network');
  if (value === undefined || value === null || value === '') fail('Network is required, e.g. "Network": "10.17.0.0/16"');
  if (typeof value !== 'string') fail(`Network must be a CIDR string, got ${show(value)}`);
  let network: Cidr;
  try {
    // flannel parses with net.ParseCIDR, which clears host bits: "10.17.1.0/16" means 10.17.0.0/16.
    network = parseCidr(value, true);
  } catch {
    return fail(`Network ${show(value)} is not an IPv4 CIDR such as "10.17.0.0/16"`);
  }
  if (network.address === 0 && network.prefixLength === 0) fail(`Network ${show(value)} is empty; give a CIDR such as "10.17.0.0/16"`);
  // Not a flannel check: flannel would lease such subnets, and their packets would never leave the node.
  const unusable = unusablePodNetwork(network);
  if (unusable !== undefined) fail(`Network ${unusable}: a pod network cannot be loopback, multicast or reserved; choose a private range such as "10.17.0.0/16"`);
  return network;
}

/** flannel: an explicit SubnetLen must leave at least four subnets; otherwise /24, or a quarter of a small network. */
function parseSubnetLen(obj: JsonObject, network: Cidr): number {
  const given = integerField(obj, 'SubnetLen', 'SubnetLen', 0, 32);
  const net = formatCidr(network);
  if (given !== undefined && given > 0) {
    if (given > 30) fail(`SubnetLen ${given} is too long: each subnet needs at least 4 addresses (SubnetLen at most 30)`);
    if (given < network.prefixLength + 2) {
      fail(`SubnetLen ${given} is too short for Network ${net}: the network must hold at least four subnets (SubnetLen at least ${network.prefixLength + 2})`);
    }
    return given;
  }
  if (network.prefixLength > 28) fail(`Network ${net} is too small: the smallest useful network is a /28`);
  return network.prefixLength <= 22 ? 24 : network.prefixLength + 2;
}

function parseSubnetBound(obj: JsonObject, name: 'SubnetMin' | 'SubnetMax', network: Cidr, subnetLen: number, fallback: IPv4): IPv4 {
  const given = ipv4Field(obj, name);
  // flannel treats 0.0.0.0 as "not set".
  if (given === undefined || given === 0) return fallback;
  if (!cidrContains(network, given)) fail(`${name} ${formatIPv4(given)} is not in Network ${formatCidr(network)}`);
  if (((given & prefixMask(subnetLen)) >>> 0) !== given) {
    fail(`${name} ${formatIPv4(given)} is not on a SubnetLen boundary (/${subnetLen})`);
  }
  return given;
}

function parseIpv6Network(obj: JsonObject): Cidr6 {
  const value = field(obj, 'IPv6Network');
  if (value === undefined || value === null || value === '') fail('EnableIPv6 is true but IPv6Network is missing; give one such as "IPv6Network": "fd00:10:244::/56"');
  if (typeof value !== 'string') fail(`IPv6Network must be a CIDR string, got ${show(value)}`);
  let network: Cidr6;
  try {
    // Like Network: net.ParseCIDR clears host bits.
    network = parseCidr6(value, true);
  } catch {
    return fail(`IPv6Network ${show(value)} is not an IPv6 CIDR such as "fd00:10:244::/56"`);
  }
  if (network.prefixLength === 0) fail(`IPv6Network ${show(value)} is the whole IPv6 space; give a CIDR such as "fd00:10:244::/56"`);
  const unusable = unusablePodNetwork6(network);
  if (unusable !== undefined) fail(`IPv6Network ${unusable}: choose a unique local range such as "fd00:10:244::/56"`);
  return network;
}

/** flannel: an explicit IPv6SubnetLen is at most 126 and leaves four subnets; otherwise /64, or a quarter of a small network. */
function parseIpv6SubnetLen(obj: JsonObject, network: Cidr6): number {
  const given = integerField(obj, 'IPv6SubnetLen', 'IPv6SubnetLen', 0, 128);
  const net = formatCidr6(network);
  if (given !== undefined && given > 0) {
    if (given > 126) fail(`IPv6SubnetLen ${given} is too long: each subnet needs at least 4 addresses (IPv6SubnetLen at most 126)`);
    if (given < network.prefixLength + 2) {
      fail(`IPv6SubnetLen ${given} is too short for IPv6Network ${net}: the network must hold at least four subnets (IPv6SubnetLen at least ${network.prefixLength + 2})`);
    }
    return given;
  }
  if (network.prefixLength > 124) fail(`IPv6Network ${net} is too small: the smallest useful IPv6 network is a /124`);
  return network.prefixLength <= 62 ? DEFAULT_IPV6_SUBNET_LEN : network.prefixLength + 2;
}

function parseIpv6SubnetBound(obj: JsonObject, name: 'IPv6SubnetMin' | 'IPv6SubnetMax', network: Cidr6, subnetLen: number, fallback: IPv6): IPv6 {
  const given = ipv6Field(obj, name);
  // flannel (ip.IsEmpty) treats an absent or :: bound as "not set".
  if (given === undefined || given === 0n) return fallback;
  if (!cidr6Contains(network, given)) fail(`${name} ${formatIPv6(given)} is not in IPv6Network ${formatCidr6(network)}`);
  if ((given & prefixMask6(subnetLen)) !== given) fail(`${name} ${formatIPv6(given)} is not on an IPv6SubnetLen boundary (/${subnetLen})`);
  return given;
}

function parseIpv6(doc: JsonObject): Ipv6NetworkConfig {
  const network = parseIpv6Network(doc);
  const subnetLen = parseIpv6SubnetLen(doc, network);
  const size = 1n << BigInt(128 - subnetLen);
  // As for IPv4, the first subnet is skipped by default (flannel's GetIPv6SubnetMin).
  const subnetMin = parseIpv6SubnetBound(doc, 'IPv6SubnetMin', network, subnetLen, network.address + size);
  const end = network.address + (1n << BigInt(128 - network.prefixLength));
  const subnetMax = parseIpv6SubnetBound(doc, 'IPv6SubnetMax', network, subnetLen, end - size);
  if (subnetMin > subnetMax) fail(`IPv6SubnetMin ${formatIPv6(subnetMin)} is above IPv6SubnetMax ${formatIPv6(subnetMax)}`);
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseBackend(obj: JsonObject): BackendConfig {
  const backend = field(obj, 'Backend');
  if (backend === undefined || backend === null) return unknownBackend(FLANNEL_DEFAULT_BACKEND);
  if (!isObject(backend)) fail(`Backend must be an object such as {"Type":"vxlan"}, got ${show(backend)}`);
  const type = field(backend, 'Type');
  if (type !== undefined && typeof type !== 'string') fail(`Backend.Type must be a string, got ${show(type)}`);
  switch (type) {
    case 'vxlan': {
      for (const unsupported of ['GBP', 'Learning']) {
        if (booleanField(backend, unsupported, `Backend.${unsupported}`) === true) {
          fail(`Backend.${unsupported} true is not supported by vxtun`);
        }
      }
      const vni = integerField(backend, 'VNI', 'Backend.VNI', 0, MAX_VNI) ?? DEFAULT_VNI;
      const port = integerField(backend, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_VXLAN_PORT;
      const directRouting = booleanField(backend, 'DirectRouting', 'Backend.DirectRouting') ?? false;
      const mtu = integerField(backend, 'MTU', 'Backend.MTU', 0, 65535);
      if (mtu !== undefined && mtu !== 0 && mtu < 68) fail(`Backend.MTU must be at least 68 (IPv4 minimum), got ${mtu}`);
      return mtu ? { type, vni, port, directRouting, mtu } : { type, vni, port, directRouting };
    }
    case 'ipip':
      return { type, directRouting: booleanField(backend, 'DirectRouting', 'Backend.DirectRouting') ?? false };
    case 'host-gw':
      return { type };
    case 'bgp':
      return parseBgpBackend(backend);
    default:
      return unknownBackend(type ?? '');
  }
}

function parseBgpBackend(backend: JsonObject): BgpBackendConfig {
  const as = integerField(backend, 'AS', 'Backend.AS', 1, 4294967294) ?? DEFAULT_BGP_AS;
  if (as === AS_TRANS) fail(`Backend.AS ${AS_TRANS} is AS_TRANS (RFC 6793), a placeholder, not an AS: choose another, e.g. ${DEFAULT_BGP_AS}`);
  const encap = field(backend, 'Encap') ?? 'none';
  if (typeof encap !== 'string' || !(BGP_ENCAPS as readonly string[]).includes(encap)) {
    fail(`Backend.Encap must be one of ${BGP_ENCAPS.map((e) => JSON.stringify(e)).join(', ')}, got ${show(encap)}`);
  }
  const reflectors = field(backend, 'RouteReflectors') ?? [];
  if (!Array.isArray(reflectors)) fail(`Backend.RouteReflectors must be a list of IPv4 addresses, got ${show(reflectors)}`);
  const routeReflectors: IPv4[] = [];
  for (const value of reflectors) {
    let ip: IPv4;
    try {
      if (typeof value !== 'string') throw new Error();
      ip = parseIPv4(value);
    } catch {
      return fail(`Backend.RouteReflectors: ${show(value)} is not an IPv4 address`);
    }
    if (routeReflectors.includes(ip)) fail(`Backend.RouteReflectors names ${formatIPv4(ip)} twice`);
    routeReflectors.push(ip);
  }
  const restart = field(backend, 'GracefulRestart');
  let gracefulRestart = DEFAULT_GRACEFUL_RESTART_SECONDS;
  if (restart === false) gracefulRestart = 0;
  else if (restart !== true) {
    gracefulRestart = integerField(backend, 'GracefulRestart', 'Backend.GracefulRestart (seconds, 0 = off)', 0, MAX_GRACEFUL_RESTART_SECONDS) ?? DEFAULT_GRACEFUL_RESTART_SECONDS;
  }
  const bfd = booleanField(backend, 'BFD', 'Backend.BFD') ?? false;
  return { type: 'bgp', as, encap: encap as BgpEncap, routeReflectors, gracefulRestart, bfd };
}

function unknownBackend(type: string): never {
  const message = `unknown backend type ${JSON.stringify(type)} (vxtun supports ${SUPPORTED_BACKENDS.join(', ')})`;
  throw new NetworkConfigError(message, message);
}

/** Parses and checks flannel's network config JSON, filling in flannel's defaults. */
export function parseNetworkConfig(json: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    return fail(`not valid JSON (${(err as Error).message}): ${show(json.length > 80 ? json.slice(0, 80) + '...' : json)}`);
  }
  if (!isObject(doc)) fail(`must be a JSON object, got ${show(doc)}`);
  const enableIPv4 = booleanField(doc, 'EnableIPv4', 'EnableIPv4') ?? true;
  const enableIPv6 = booleanField(doc, 'EnableIPv6', 'EnableIPv6') ?? false;
  if (!enableIPv4 && !enableIPv6) fail('EnableIPv4 and EnableIPv6 are both false: the network carries nothing; enable one');
  // flannel leaves the IPv4 fields of an IPv6-only network at their zero values (lease keys "0.0.0.0-0&<ipv6>-<len>").
  const config: NetworkConfig = enableIPv4
    ? { ...parseIpv4(doc), backend: undefined as unknown as BackendConfig }
    : { enableIPv4: false, network: { address: 0, prefixLength: 0 }, subnetLen: 0, subnetMin: 0, subnetMax: 0, backend: undefined as unknown as BackendConfig };
  if (enableIPv6) config.ipv6 = parseIpv6(doc);
  const backend = parseBackend(doc);
  if (enableIPv6 && !IPV6_BACKENDS.includes(backend.type)) {
    fail(`EnableIPv6 is not supported with backend ${backend.type}: IPv6 is carried by the ${IPV6_BACKENDS.join(' and ')} backends`);
  }
  if (enableIPv6 && backend.type === 'vxlan' && backend.mtu !== undefined && backend.mtu < IPV6_MIN_MTU) {
    fail(`Backend.MTU ${backend.mtu} is below IPv6's minimum link MTU ${IPV6_MIN_MTU} (RFC 8200), and EnableIPv6 is true`);
  }
  config.backend = backend;
  return config;
}

function parseIpv4(doc: JsonObject): Pick<NetworkConfig, 'network' | 'subnetLen' | 'subnetMin' | 'subnetMax'> {
  const network = parseNetwork(doc);
  const subnetLen = parseSubnetLen(doc, network);
  const subnetSize = 2 ** (32 - subnetLen);
  // The first subnet is skipped by default: its .0 would be the network address of the whole Network.
  const subnetMin = parseSubnetBound(doc, 'SubnetMin', network, subnetLen, network.address + subnetSize);
  const networkEnd = network.address + 2 ** (32 - network.prefixLength);
  const subnetMax = parseSubnetBound(doc, 'SubnetMax', network, subnetLen, networkEnd - subnetSize);
  // Not a flannel check (flannel would just find no free subnet later); saying it now is kinder.
  if (subnetMin > subnetMax) fail(`SubnetMin ${formatIPv4(subnetMin)} is above SubnetMax ${formatIPv4(subnetMax)}`);
  return { network, subnetLen, subnetMin, subnetMax };
}

export type BackendOptions =
  | { type: 'vxlan'; vni?: number; port?: number; directRouting?: boolean; mtu?: number }
  | { type: 'ipip'; directRouting?: boolean }
  | { type: 'host-gw' }
  | { type: 'bgp'; as?: number; encap?: BgpEncap; routeReflectors?: IPv4[]; gracefulRestart?: number; bfd?: boolean };

export interface NetworkConfigOptions {
  /** Absent only in an IPv6-only network (`ipv6Only`). */
  network?: Cidr;
  subnetLen?: number;
  subnetMin?: IPv4;
  subnetMax?: IPv4;
  backend?: BackendOptions;
  /** Makes the network dual-stack (EnableIPv6, IPv6Network). */
  ipv6Network?: Cidr6;
  ipv6SubnetLen?: number;
  ipv6SubnetMin?: IPv6;
  ipv6SubnetMax?: IPv6;
  /** IPv6 only: writes "EnableIPv4": false and no Network; needs ipv6Network. */
  ipv6Only?: boolean;
}

/**
 * Writes flannel's config JSON, e.g. {"Network":"10.17.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}.
 * Only given fields are written, so flanneld applies the same defaults we do. Throws what parseNetworkConfig would.
 */
export function formatNetworkConfig(options: NetworkConfigOptions): string {
  const doc: JsonObject = {};
  if (options.ipv6Only) doc.EnableIPv4 = false;
  if (options.ipv6Network !== undefined) doc.EnableIPv6 = true;
  if (options.network !== undefined) doc.Network = formatCidr(options.network);
  if (options.ipv6Network !== undefined) doc.IPv6Network = formatCidr6(options.ipv6Network);
  if (options.ipv6SubnetLen !== undefined) doc.IPv6SubnetLen = options.ipv6SubnetLen;
  if (options.ipv6SubnetMin !== undefined) doc.IPv6SubnetMin = formatIPv6(options.ipv6SubnetMin);
  if (options.ipv6SubnetMax !== undefined) doc.IPv6SubnetMax = formatIPv6(options.ipv6SubnetMax);
  if (options.subnetLen !== undefined) doc.SubnetLen = options.subnetLen;
  if (options.subnetMin !== undefined) doc.SubnetMin = formatIPv4(options.subnetMin);
  if (options.subnetMax !== undefined) doc.SubnetMax = formatIPv4(options.subnetMax);
  const backend = options.backend ?? { type: 'vxlan' };
  const out: JsonObject = { Type: backend.type };
  if (backend.type === 'vxlan') {
    if (backend.vni !== undefined) out.VNI = backend.vni;
    if (backend.port !== undefined) out.Port = backend.port;
    if (backend.directRouting) out.DirectRouting = true;
    if (backend.mtu !== undefined) out.MTU = backend.mtu;
  } else if (backend.type === 'ipip') {
    if (backend.directRouting) out.DirectRouting = true;
  } else if (backend.type === 'bgp') {
    if (backend.as !== undefined) out.AS = backend.as;
    if (backend.encap !== undefined) out.Encap = backend.encap;
    if (backend.routeReflectors !== undefined && backend.routeReflectors.length > 0) out.RouteReflectors = backend.routeReflectors.map(formatIPv4);
    if (backend.gracefulRestart !== undefined) out.GracefulRestart = backend.gracefulRestart;
    if (backend.bfd) out.BFD = true;
  }
  doc.Backend = out;
  const json = JSON.stringify(doc);
  parseNetworkConfig(json);
  return json;
}

/**
 * How a stored config differs from the running one, one entry per field that matters to the data plane or the
 * leases, e.g. ["Backend.VNI 1 -> 2", "Network 10.17.0.0/16 -> 10.18.0.0/16"]; empty when they mean the same network.
 */
export function networkConfigDifferences(running: NetworkConfig, stored: NetworkConfig): string[] {
  const out: string[] = [];
  const compare = (name: string, a: string | number | boolean | undefined, b: string | number | boolean | undefined): void => {
    if (a !== b) out.push(`${name} ${a ?? '(none)'} -> ${b ?? '(none)'}`);
  };
  compare('Network', formatCidr(running.network), formatCidr(stored.network));
  compare('SubnetLen', running.subnetLen, stored.subnetLen);
  compare('SubnetMin', formatIPv4(running.subnetMin), formatIPv4(stored.subnetMin));
  compare('SubnetMax', formatIPv4(running.subnetMax), formatIPv4(stored.subnetMax));
  compare('EnableIPv4', carriesIPv4(running), carriesIPv4(stored));
  compare('EnableIPv6', running.ipv6 !== undefined, stored.ipv6 !== undefined);
  const v6a = running.ipv6;
  const v6b = stored.ipv6;
  compare('IPv6Network', v6a && formatCidr6(v6a.network), v6b && formatCidr6(v6b.network));
  compare('IPv6SubnetLen', v6a?.subnetLen, v6b?.subnetLen);
  compare('IPv6SubnetMin', v6a && formatIPv6(v6a.subnetMin), v6b && formatIPv6(v6b.subnetMin));
  compare('IPv6SubnetMax', v6a && formatIPv6(v6a.subnetMax), v6b && formatIPv6(v6b.subnetMax));
  const a = running.backend;
  const b = stored.backend;
  compare('Backend.Type', a.type, b.type);
  // Written against the union's shape, not its members, so that a backend added later needs no case here.
  compare('Backend.DirectRouting', 'directRouting' in a ? a.directRouting : undefined, 'directRouting' in b ? b.directRouting : undefined);
  if (a.type === 'vxlan' && b.type === 'vxlan') {
    compare('Backend.VNI', a.vni, b.vni);
    compare('Backend.Port', a.port, b.port);
    compare('Backend.MTU', a.mtu, b.mtu);
  }
  return out;
}
