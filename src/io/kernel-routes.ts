// Kernel routing state the agent programs around its TUN (the cluster network into the TUN; later host-gw routes),
// through iproute2: this is control-path work done a few times per lease, not per packet.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
  }
}

/** `ip route replace <destination> dev <device> [via <gateway> onlink]`: idempotent. */
export async function replaceRoute(destination: string, device: string, gateway?: string): Promise<void> {
  const args = ['route', 'replace', destination, 'dev', device];
  if (gateway !== undefined) args.push('via', gateway, 'onlink');
  await ip(args);
}

/** Deletes a route; a route already gone is not an error. */
export async function deleteRoute(destination: string, device: string): Promise<void> {
  try {
    await ip(['route', 'del', destination, 'dev', device]);
  } catch (err) {
    if (!/No such process|Cannot find device/.test((err as Error).message)) throw err;
  }
}

/**
 * `ip link set <device> txqueuelen <n>`. The TUN driver drops what its queue cannot hold while we are busy
 * (tx_dropped), which TCP sees as loss: 500, the default, made iperf3 retransmit thousands of segments a second here.
 */
export async function setTxQueueLength(device: string, packets: number): Promise<void> {
  await ip(['link', 'set', 'dev', device, 'txqueuelen', String(packets)]);
}

/**
 * `ip link set dev <device> gso_max_segs <segments>`: the kernel builds no super-packet of more segments for this device
 * (TCP sizes its TSO bursts by it, sk_setup_caps; forwarded GRO packets beyond it are segmented in software before
 * the device), so every super-packet the TUN hands us fits what we can cut.
 */
export async function setGsoMaxSegments(device: string, segments: number): Promise<void> {
  await ip(['link', 'set', 'dev', device, 'gso_max_segs', String(segments)]);
}

/**
 * `ip -6 route replace <destination> dev <device>`: the cluster IPv6 network into the TUN (flannel routes it into
 * flannel-v6.<VNI>). Idempotent.
 */
export async function replaceRoute6(destination: string, device: string): Promise<void> {
  await ip(['-6', 'route', 'replace', destination, 'dev', device]);
}

/** `ip -6 route replace <destination> via <gateway> dev <device>`: host-gw's IPv6 route to a peer's PublicIPv6. */
export async function replaceRoute6Via(destination: string, gateway: string, device: string): Promise<void> {
  await ip(['-6', 'route', 'replace', destination, 'via', gateway, 'dev', device]);
}

/** Deletes an IPv6 route; a route already gone is not an error. */
export async function deleteRoute6(destination: string, device: string): Promise<void> {
  try {
    await ip(['-6', 'route', 'del', destination, 'dev', device]);
  } catch (err) {
    if (!/No such process|Cannot find device/.test((err as Error).message)) throw err;
  }
}

/**
 * `ip -6 addr replace <address>/128 dev <device> nodad`: the TUN's own IPv6 address, a /128 as flannel gives its v6
 * device `<subnet>::/128` (pkg/backend/vxlan/vxlan.go ConfigureIPv6), so the kernel adds no on-link prefix route that
 * would shadow the cluster route; nodad because nothing else on a point-to-point TUN can hold it, and a tentative
 * address (DAD takes a second or more) cannot be a source meanwhile.
 */
export async function replaceAddress6(address: string, device: string): Promise<void> {
  await ip(['-6', 'addr', 'replace', `${address}/128`, 'dev', device, 'nodad']);
}
