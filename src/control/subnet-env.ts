// /run/flannel/subnet.env, the file the flannel CNI plugin reads to give pods addresses from this node's lease:
//   FLANNEL_NETWORK=10.17.0.0/16  FLANNEL_SUBNET=10.17.1.1/24 (first usable IP)  FLANNEL_MTU=1450  FLANNEL_IPMASQ=true
// We also read it back at start, as flanneld does, to ask for the same subnet again.
// Dual stack adds FLANNEL_IPV6_NETWORK=fd00:10:244::/56 and FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64 (the first usable
// address again, flannel pkg/subnet/subnetfile_unix.go WriteSubnetFile); an IPv6-only node writes no IPv4 lines.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Cidr, formatCidr, formatIPv4, parseCidr } from '../wire/address';
import { type Cidr6, formatCidr6, formatIPv6, parseCidr6 } from '../wire/address6';
import { NO_IPV4_SUBNET, hasIPv4Subnet } from './lease';

export const DEFAULT_SUBNET_ENV_PATH = '/run/flannel/subnet.env';

export interface SubnetEnv {
  /** 0.0.0.0/0 on an IPv6-only node (no FLANNEL_NETWORK line). */
  network: Cidr;
  /** The lease's subnet (10.17.1.0/24); the file holds its first usable address (10.17.1.1/24). 0.0.0.0/0: IPv6 only. */
  subnet: Cidr;
  /** FLANNEL_IPV6_NETWORK, e.g. fd00:10:244::/56; absent on a node without IPv6. */
  network6?: Cidr6;
  /** The lease's IPv6 subnet (fd00:10:244:1::/64); the file holds fd00:10:244:1::1/64. */
  subnet6?: Cidr6;
  mtu: number;
  ipMasq: boolean;
}

/** flannel's line order: the IPv4 pair, the IPv6 pair, MTU, IPMASQ. */
export function formatSubnetEnv(env: SubnetEnv): string {
  let text = '';
  if (hasIPv4Subnet(env.subnet)) {
    text += `FLANNEL_NETWORK=${formatCidr(env.network)}\nFLANNEL_SUBNET=${formatIPv4(env.subnet.address + 1)}/${env.subnet.prefixLength}\n`;
  }
  if (env.network6 !== undefined && env.subnet6 !== undefined) {
    text += `FLANNEL_IPV6_NETWORK=${formatCidr6(env.network6)}\nFLANNEL_IPV6_SUBNET=${formatIPv6(env.subnet6.address + 1n)}/${env.subnet6.prefixLength}\n`;
  }
  return text + `FLANNEL_MTU=${env.mtu}\nFLANNEL_IPMASQ=${env.ipMasq}\n`;
}

/** Writes the file atomically (a temporary file renamed over it), creating parent directories. */
export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  if (!Number.isInteger(env.mtu) || env.mtu < 68 || env.mtu > 65535) throw new Error(`subnet.env FLANNEL_MTU must be 68-65535, got ${env.mtu}`);
  if (hasIPv4Subnet(env.subnet) && env.subnet.prefixLength > 30) throw new Error(`subnet.env subnet ${formatCidr(env.subnet)} has no usable host address`);
  if (env.subnet6 !== undefined && env.subnet6.prefixLength > 126) throw new Error(`subnet.env IPv6 subnet ${formatCidr6(env.subnet6)} has no usable host address`);
  if (!hasIPv4Subnet(env.subnet) && env.subnet6 === undefined) throw new Error('subnet.env needs an IPv4 or an IPv6 subnet');
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temp, formatSubnetEnv(env), { mode: 0o644 });
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
}

export function parseSubnetEnv(text: string, source = 'subnet.env'): SubnetEnv {
  const values = new Map<string, { value: string; line: number }>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${source} line ${i + 1}: expected KEY=VALUE, got ${JSON.stringify(line)}`);
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    values.set(line.slice(0, eq).trim(), { value, line: i + 1 });
  }
  const take = (name: string): { value: string; line: number } => {
    const entry = values.get(name);
    if (!entry) throw new Error(`${source}: ${name} is missing`);
    return entry;
  };
  const bad = (name: string, entry: { value: string; line: number }, expected: string): never => {
    throw new Error(`${source} line ${entry.line}: ${name} must be ${expected}, got ${JSON.stringify(entry.value)}`);
  };

  // An IPv6-only node writes no IPv4 lines; every other file has them.
  const ipv6Only = !values.has('FLANNEL_NETWORK') && !values.has('FLANNEL_SUBNET') && values.has('FLANNEL_IPV6_SUBNET');
  let network: Cidr = NO_IPV4_SUBNET;
  let subnet: Cidr = NO_IPV4_SUBNET;
  if (!ipv6Only) {
    const networkEntry = take('FLANNEL_NETWORK');
    try {
      network = parseCidr(networkEntry.value);
    } catch {
      return bad('FLANNEL_NETWORK', networkEntry, 'an IPv4 CIDR such as 10.17.0.0/16');
    }
    const subnetEntry = take('FLANNEL_SUBNET');
    try {
      // The file holds an address inside the subnet (its first usable one); the lease is the subnet itself.
      subnet = parseCidr(subnetEntry.value, true);
    } catch {
      return bad('FLANNEL_SUBNET', subnetEntry, 'an IPv4 address with prefix such as 10.17.1.1/24');
    }
  }
  let network6: Cidr6 | undefined;
  let subnet6: Cidr6 | undefined;
  // Both or neither (the file is read back for the previous subnet, and a lone IPv6 line names none); both when IPv6 only.
  if (ipv6Only || (values.has('FLANNEL_IPV6_NETWORK') && values.has('FLANNEL_IPV6_SUBNET'))) {
    const network6Entry = take('FLANNEL_IPV6_NETWORK');
    try {
      network6 = parseCidr6(network6Entry.value);
    } catch {
      return bad('FLANNEL_IPV6_NETWORK', network6Entry, 'an IPv6 CIDR such as fd00:10:244::/56');
    }
    const subnet6Entry = take('FLANNEL_IPV6_SUBNET');
    try {
      subnet6 = parseCidr6(subnet6Entry.value, true);
    } catch {
      return bad('FLANNEL_IPV6_SUBNET', subnet6Entry, 'an IPv6 address with prefix such as fd00:10:244:1::1/64');
    }
  }
  const mtuEntry = take('FLANNEL_MTU');
  const mtu = Number(mtuEntry.value);
  if (!/^\d+$/.test(mtuEntry.value) || mtu < 68 || mtu > 65535) bad('FLANNEL_MTU', mtuEntry, 'an integer from 68 to 65535');
  const masqEntry = take('FLANNEL_IPMASQ');
  if (masqEntry.value !== 'true' && masqEntry.value !== 'false') bad('FLANNEL_IPMASQ', masqEntry, 'true or false');
  const env: SubnetEnv = { network, subnet, mtu, ipMasq: masqEntry.value === 'true' };
  if (network6 !== undefined && subnet6 !== undefined) {
    env.network6 = network6;
    env.subnet6 = subnet6;
  }
  return env;
}

/** The file's values, or undefined when it does not exist; a malformed file throws, naming the line. */
export async function readSubnetEnv(path: string): Promise<SubnetEnv | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseSubnetEnv(text, path);
}
