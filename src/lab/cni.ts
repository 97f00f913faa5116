// The CNI plugins a Kubernetes node runs, invoked the way kubelet's container runtime invokes them (CNI spec,
// "Execution Protocol"): the plugin binary executed in the node's network namespace with CNI_COMMAND (ADD / DEL /
// CHECK), CNI_CONTAINERID, CNI_NETNS (the pod's namespace path), CNI_IFNAME, CNI_PATH in its environment and the
// network configuration JSON on stdin; it answers with a result (ADD) or an error {code, msg, details} on stdout.
//
// flannel's own CNI plugin (flannel-io/cni-plugin) is not in Debian, but all it does is read subnet.env and call its
// delegate, the `bridge` plugin with `host-local` IPAM; flannelDelegateConfig builds that delegate configuration
// exactly as its doCmdAdd / getDelegateIPAM do, so the lab runs the very plugins a flannel node runs, configured
// from the subnet.env vxtun wrote.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { type Cidr, cidrContains, formatCidr, parseCidr, parseIPv4 } from '../wire/address';
import { type Cidr6, cidr6Contains, formatCidr6, isIPv6, parseCidr6, parseIPv6 } from '../wire/address6';

/** Where Debian's containernetworking-plugins puts bridge, host-local and the others. */
export const CNI_BIN_DIR = '/usr/lib/cni';
/** The CNI spec version of the configurations we write (Debian's plugins support 0.1.0 to 1.0.0; CHECK needs >= 0.4.0). */
export const CNI_VERSION = '1.0.0';
/** kube-flannel's network name (its cni-conf.json: "name": "cbr0"). */
export const FLANNEL_NETWORK_NAME = 'cbr0';
/** The delegate section of kube-flannel's cni-conf.json; everything else comes from subnet.env. */
export const KUBE_FLANNEL_DELEGATE = { hairpinMode: true, isDefaultGateway: true } as const;

const PLUGIN_TIMEOUT_MS = 30_000;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

export interface CniInterface {
  name: string;
  mac?: string;
  /** The pod's namespace path for interfaces inside it; absent for the node's (cni0, the veth's node end). */
  sandbox?: string;
}

export interface CniIpConfig {
  /** CIDR notation: the pod's address with its subnet's prefix, e.g. 10.17.3.2/24. */
  address: string;
  gateway?: string;
  /** Index into interfaces. */
  interface?: number;
}

/** A CNI ADD result (spec 1.0.0 "Success"); other fields (dns...) are kept but not checked. */
export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes?: { dst: string; gw?: string }[];
  [key: string]: unknown;
}

/** A plugin's failure, with the error it reported (spec: {cniVersion, code, msg, details}) when it reported one. */
export class CniError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly code: number | undefined,
    readonly msg: string,
    readonly details: string | undefined,
  ) {
    super(`CNI ${command} with ${plugin} failed: ${msg}${code !== undefined ? ` (code ${code})` : ''}${details ? `: ${details}` : ''}`);
    this.name = 'CniError';
  }
}

/**
 * subnet.env as flannel's CNI plugin reads it (flannel-io/cni-plugin flannel.go loadFlannelSubnetEnv): the IPv4 pair
 * FLANNEL_NETWORK / FLANNEL_SUBNET, the IPv6 pair FLANNEL_IPV6_NETWORK / FLANNEL_IPV6_SUBNET, or both (dual-stack;
 * flanneld writes a pair only for the stacks it runs: EnableIPv4 / EnableIPv6). Subnets as networks (the file holds
 * their first usable address). src/control/subnet-env.ts's SubnetEnv (both IPv4 fields set) is one of these.
 */
export interface FlannelEnv {
  network?: Cidr;
  subnet?: Cidr;
  ipv6Network?: Cidr6;
  ipv6Subnet?: Cidr6;
  mtu: number;
  ipMasq: boolean;
}

/** Parses subnet.env text for the CNI side; throws naming the key for a malformed value or a file with neither stack. */
export function parseFlannelEnv(text: string, source = 'subnet.env'): FlannelEnv {
  const values = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${source}: expected KEY=VALUE, got ${JSON.stringify(line)}`);
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    values.set(line.slice(0, eq).trim(), value);
  }
  const parsed = <T>(key: string, parse: (v: string) => T, expected: string): T | undefined => {
    const value = values.get(key);
    if (value === undefined) return undefined;
    try {
      return parse(value);
    } catch {
      throw new Error(`${source}: ${key} must be ${expected}, got ${JSON.stringify(value)}`);
    }
  };
  const env: FlannelEnv = {
    network: parsed('FLANNEL_NETWORK', (v) => parseCidr(v), 'an IPv4 CIDR'),
    subnet: parsed('FLANNEL_SUBNET', (v) => parseCidr(v, true), 'an IPv4 address with prefix'),
    ipv6Network: parsed('FLANNEL_IPV6_NETWORK', (v) => parseCidr6(v), 'an IPv6 CIDR'),
    ipv6Subnet: parsed('FLANNEL_IPV6_SUBNET', (v) => parseCidr6(v, true), 'an IPv6 address with prefix'),
    mtu: parsed('FLANNEL_MTU', (v) => {
      const mtu = Number(v);
      if (!/^\d+$/.test(v) || mtu < 68 || mtu > 65535) throw new Error('range');
      return mtu;
    }, 'an integer from 68 to 65535') ?? 0,
    ipMasq: parsed('FLANNEL_IPMASQ', (v) => {
      if (v !== 'true' && v !== 'false') throw new Error('boolean');
      return v === 'true';
    }, 'true or false') ?? false,
  };
  if (!values.has('FLANNEL_MTU')) throw new Error(`${source}: FLANNEL_MTU is missing`);
  if (!values.has('FLANNEL_IPMASQ')) throw new Error(`${source}: FLANNEL_IPMASQ is missing`);
  if ((env.network === undefined) !== (env.subnet === undefined)) throw new Error(`${source}: FLANNEL_NETWORK and FLANNEL_SUBNET go together`);
  if ((env.ipv6Network === undefined) !== (env.ipv6Subnet === undefined)) {
    throw new Error(`${source}: FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET go together`);
  }
  if (env.subnet === undefined && env.ipv6Subnet === undefined) throw new Error(`${source}: neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET is set`);
  return env;
}

/** The file's values, or undefined when it does not exist (the agent writes it once it holds a lease). */
export async function readFlannelEnv(path: string): Promise<FlannelEnv | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseFlannelEnv(text, path);
}

/**
 * The configuration flannel's CNI plugin hands its delegate (flannel-io/cni-plugin flannel_linux.go, doCmdAdd and
 * getDelegateIPAM), from subnet.env and the network config's delegate section:
 *   name = the network's name; type = bridge; ipMasq = !FLANNEL_IPMASQ; mtu = FLANNEL_MTU; isGateway = true;
 *   cniVersion = the network's; ipam = host-local, ranges [[{subnet: FLANNEL_SUBNET's network}]] and, dual-stack or
 *   IPv6-only, [{subnet: FLANNEL_IPV6_SUBNET's network}] as a second range set (one address of each family per pod),
 *   routes [{dst: FLANNEL_NETWORK}, {dst: FLANNEL_IPV6_NETWORK}] for the stacks present. Keys the delegate section
 *   sets itself win, as in the plugin.
 * `ipamDataDir` (ours, not flannel's) moves host-local's allocations from /var/lib/cni/networks into the lab.
 */
export function flannelDelegateConfig(
  env: FlannelEnv,
  options: { name?: string; cniVersion?: string; delegate?: Record<string, unknown>; ipamDataDir?: string } = {},
): Record<string, unknown> {
  const delegate: Record<string, unknown> = { ...(options.delegate ?? KUBE_FLANNEL_DELEGATE) };
  delegate.name = options.name ?? FLANNEL_NETWORK_NAME;
  if (!('type' in delegate)) delegate.type = 'bridge';
  if (!('ipMasq' in delegate)) delegate.ipMasq = !env.ipMasq;
  if (!('mtu' in delegate)) delegate.mtu = env.mtu;
  if (delegate.type === 'bridge' && !('isGateway' in delegate)) delegate.isGateway = true;
  delegate.cniVersion = options.cniVersion ?? CNI_VERSION;
  const ranges: Array<Array<{ subnet: string }>> = [];
  const routes: Array<{ dst: string }> = [];
  if (env.subnet !== undefined && env.network !== undefined) {
    ranges.push([{ subnet: formatCidr(env.subnet) }]);
    routes.push({ dst: formatCidr(env.network) });
  }
  if (env.ipv6Subnet !== undefined && env.ipv6Network !== undefined) {
    ranges.push([{ subnet: formatCidr6(env.ipv6Subnet) }]);
    routes.push({ dst: formatCidr6(env.ipv6Network) });
  }
  const ipam: Record<string, unknown> = { type: 'host-local', ranges, routes };
  if (options.ipamDataDir !== undefined) ipam.dataDir = options.ipamDataDir;
  delegate.ipam = ipam;
  return delegate;
}

export interface CniInvocation {
  command: CniCommand;
  /** CNI_CONTAINERID: letters, digits, '_', '.', '-' (spec 1.0.0). */
  containerId: string;
  /** CNI_NETNS: the pod's namespace path, /var/run/netns/<name> for `ip netns` namespaces. */
  netnsPath: string;
  /** CNI_IFNAME: the interface the plugin makes inside the pod. */
  ifName: string;
  config: Record<string, unknown>;
  /** Network namespace (by `ip netns` name) the plugin runs in: the node's, as kubelet runs in the host's. */
  runIn?: string;
  /** CNI_PATH (default /usr/lib/cni). */
  binDir?: string;
}

/** The path CNI_NETNS takes for a namespace made with `ip netns add`. */
export function netnsPath(name: string): string {
  return `/var/run/netns/${name}`;
}

/**
 * Executes the plugin named by config.type. ADD returns its result, parsed and checked; DEL and CHECK return
 * undefined. A non-zero exit throws CniError with the plugin's msg (or its stderr when it printed no error).
 */
export async function invokeCni(call: CniInvocation): Promise<CniResult | undefined> {
  const type = call.config.type;
  if (typeof type !== 'string' || !/^[\w.-]+$/.test(type)) throw new Error(`CNI config has no valid "type": ${JSON.stringify(type)}`);
  if (!/^[\w.-]+$/.test(call.containerId)) throw new Error(`invalid CNI_CONTAINERID "${call.containerId}": letters, digits, '_', '.', '-' only`);
  const binDir = call.binDir ?? CNI_BIN_DIR;
  const plugin = `${binDir}/${type}`;
  if (!existsSync(plugin)) {
    throw new Error(`CNI plugin ${plugin} is missing: install Debian's containernetworking-plugins (apt-get install containernetworking-plugins)`);
  }
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netnsPath,
    CNI_IFNAME: call.ifName,
    CNI_PATH: binDir,
  };
  const [file, argv] = call.runIn === undefined ? [plugin, []] : ['ip', ['netns', 'exec', call.runIn, plugin]];
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = execFile(file, argv, { env, timeout: PLUGIN_TIMEOUT_MS, encoding: 'utf8', killSignal: 'SIGKILL' }, (error, out, err) => {
      if (error && typeof (error as NodeJS.ErrnoException).code === 'string') return reject(error);
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout: out, stderr: err });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(JSON.stringify(call.config));
  });
  if (code !== 0) {
    const reported = parseCniError(stdout);
    throw new CniError(type, call.command, reported?.code, reported?.msg ?? (stderr.trim() || `exit ${code}, no error on stdout`), reported?.details);
  }
  if (call.command !== 'ADD') return undefined;
  return parseCniResult(stdout);
}

/** The spec's error object from a plugin's stdout, or undefined when there is none. */
export function parseCniError(stdout: string): { code?: number; msg: string; details?: string } | undefined {
  try {
    const value = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof value.msg !== 'string') return undefined;
    return {
      code: typeof value.code === 'number' ? value.code : undefined,
      msg: value.msg,
      details: typeof value.details === 'string' && value.details !== '' ? value.details : undefined,
    };
  } catch {
    return undefined;
  }
}

/** Parses an ADD result and checks its shape (interfaces, ips with CIDR addresses, interface indexes in range). */
export function parseCniResult(stdout: string): CniResult {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    throw new Error(`CNI result is not JSON: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  const result = value as Partial<CniResult>;
  if (typeof result !== 'object' || result === null || typeof result.cniVersion !== 'string') throw new Error('CNI result has no cniVersion');
  if (!Array.isArray(result.interfaces) || result.interfaces.some((i) => typeof i?.name !== 'string')) {
    throw new Error('CNI result has no valid "interfaces" list');
  }
  if (!Array.isArray(result.ips) || result.ips.length === 0) throw new Error('CNI result has no "ips"');
  for (const ip of result.ips) {
    try {
      const text = String(ip?.address);
      if (isIPv6(text.split('/')[0] ?? '')) parseCidr6(text, true);
      else parseCidr(text, true);
    } catch {
      throw new Error(`CNI result ip ${JSON.stringify(ip?.address)} is not an IPv4 address with prefix (nor an IPv6 one)`);
    }
    if (ip.interface !== undefined && (ip.interface < 0 || ip.interface >= result.interfaces.length)) {
      throw new Error(`CNI result ip ${ip.address} names interface ${ip.interface}, which the result does not list`);
    }
  }
  return result as CniResult;
}

function isIPv6Config(ip: CniIpConfig): boolean {
  return isIPv6(ip.address.split('/')[0] ?? '');
}

/** The IPv4 address a result gave the interface inside the pod named `ifName`, checked to lie inside `subnet`. */
export function podAddressOf(result: CniResult, ifName: string, subnet: Cidr): { address: string; prefixLength: number; gateway?: string } {
  const index = result.interfaces.findIndex((i) => i.name === ifName && i.sandbox !== undefined);
  const v4 = result.ips.filter((i) => !isIPv6Config(i));
  const ip = v4.find((i) => i.interface === index) ?? v4[0];
  if (ip === undefined) throw new Error(`CNI gave no IPv4 address (expected one in ${formatCidr(subnet)})`);
  const cidr = parseCidr(ip.address, true);
  if (!cidrContains(subnet, cidr.address)) throw new Error(`CNI gave ${ip.address}, outside the node's subnet ${formatCidr(subnet)}`);
  if (ip.gateway !== undefined) parseIPv4(ip.gateway);
  return { address: ip.address.split('/')[0]!, prefixLength: cidr.prefixLength, gateway: ip.gateway };
}

/** As podAddressOf for the IPv6 address (dual-stack and IPv6-only pods), checked to lie inside `subnet`. */
export function podAddress6Of(result: CniResult, ifName: string, subnet: Cidr6): { address: string; prefixLength: number; gateway?: string } {
  const index = result.interfaces.findIndex((i) => i.name === ifName && i.sandbox !== undefined);
  const v6 = result.ips.filter(isIPv6Config);
  const ip = v6.find((i) => i.interface === index) ?? v6[0];
  if (ip === undefined) throw new Error(`CNI gave no IPv6 address (expected one in ${formatCidr6(subnet)})`);
  const cidr = parseCidr6(ip.address, true);
  if (!cidr6Contains(subnet, cidr.address)) throw new Error(`CNI gave ${ip.address}, outside the node's IPv6 subnet ${formatCidr6(subnet)}`);
  if (ip.gateway !== undefined) parseIPv6(ip.gateway);
  return { address: ip.address.split('/')[0]!, prefixLength: cidr.prefixLength, gateway: ip.gateway };
}
