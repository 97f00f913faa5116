// /run/flannel/subnet.env, the file the flannel CNI plugin reads to give pods addresses from this node's lease:
//   FLANNEL_NETWORK=10.17.0.0/16  FLANNEL_SUBNET=10.17.1.1/24 (first usable IP)  FLANNEL_MTU=1450  FLANNEL_IPMASQ=true
// We also read it back at start, as flanneld does, to ask for the same subnet again.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Cidr, formatCidr, formatIPv4, parseCidr } from '../wire/address';

export const DEFAULT_SUBNET_ENV_PATH = '/run/flannel/subnet.env';

export interface SubnetEnv {
  network: Cidr;
  /** The lease's subnet (10.17.1.0/24); the file holds its first usable address (10.17.1.1/24). */
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  const firstIp = formatIPv4(env.subnet.address + 1);
  return (
    `FLANNEL_NETWORK=${formatCidr(env.network)}\n` +
    `FLANNEL_SUBNET=${firstIp}/${env.subnet.prefixLength}\n` +
    `FLANNEL_MTU=${env.mtu}\n` +
    `FLANNEL_IPMASQ=${env.ipMasq}\n`
  );
}

/** Writes the file atomically (a temporary file renamed over it), creating parent directories. */
export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  if (!Number.isInteger(env.mtu) || env.mtu < 68 || env.mtu > 65535) throw new Error(`subnet.env FLANNEL_MTU must be 68-65535, got ${env.mtu}`);
  if (env.subnet.prefixLength > 30) throw new Error(`subnet.env subnet ${formatCidr(env.subnet)} has no usable host address`);
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

  const networkEntry = take('FLANNEL_NETWORK');
  let network: Cidr;
  try {
    network = parseCidr(networkEntry.value);
  } catch {
    return bad('FLANNEL_NETWORK', networkEntry, 'an IPv4 CIDR such as 10.17.0.0/16');
  }
  const subnetEntry = take('FLANNEL_SUBNET');
  let subnet: Cidr;
  try {
    // The file holds an address inside the subnet (its first usable one); the lease is the subnet itself.
    subnet = parseCidr(subnetEntry.value, true);
  } catch {
    return bad('FLANNEL_SUBNET', subnetEntry, 'an IPv4 address with prefix such as 10.17.1.1/24');
  }
  const mtuEntry = take('FLANNEL_MTU');
  const mtu = Number(mtuEntry.value);
  if (!/^\d+$/.test(mtuEntry.value) || mtu < 68 || mtu > 65535) bad('FLANNEL_MTU', mtuEntry, 'an integer from 68 to 65535');
  const masqEntry = take('FLANNEL_IPMASQ');
  if (masqEntry.value !== 'true' && masqEntry.value !== 'false') bad('FLANNEL_IPMASQ', masqEntry, 'true or false');
  return { network, subnet, mtu, ipMasq: masqEntry.value === 'true' };
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
