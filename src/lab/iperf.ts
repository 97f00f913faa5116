// Throughput across the lab with iperf3: a one-shot server (`-s -1`) in one node, a JSON client (`-J`) in another.
// Durations are bounded and the server is killed in `finally`, so a stuck run cannot outlive its test.

import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import type { InNamespace, Lab } from './topology';

export const DEFAULT_IPERF_PORT = 5201;
const MAX_SECONDS = 120;
const SERVER_READY_TIMEOUT_MS = 5_000;
/** Time allowed beyond the test itself: connection setup, the end-of-test exchange, a slow machine. */
const CLIENT_SLACK_MS = 15_000;

export interface IperfOptions {
  server: InNamespace;
  client: InNamespace;
  /** Address the server binds to and the client connects to (an underlay, VTEP or pod address). */
  address: string;
  /** Test length in seconds (default 2). */
  seconds?: number;
  protocol?: 'tcp' | 'udp';
  /** Parallel streams, -P (default 1). */
  streams?: number;
  /** UDP datagram payload size, -l (default iperf3's). UDP runs unlimited: -b 0. */
  udpPacketSize?: number;
  /** Reverse direction, -R: the server sends. */
  reverse?: boolean;
  port?: number;
  /** TCP maximum segment size, -M (a small one makes super-packets of many segments). */
  mss?: number;
}

export interface IperfResult {
  protocol: 'tcp' | 'udp';
  seconds: number;
  /** What the receiver got, in Gbit/s. */
  gbitPerSecond: number;
  /** Bytes the receiver got. */
  bytes: number;
  /** TCP: segments retransmitted by the sender (null for UDP or when the kernel did not say). */
  retransmits: number | null;
  /** UDP: datagrams received per second (null for TCP). */
  packetsPerSecond: number | null;
  /** UDP: datagrams lost and their share in percent (null for TCP). */
  lostPackets: number | null;
  lossPercent: number | null;
  jitterMs: number | null;
}

export async function runIperf(lab: Lab, options: IperfOptions): Promise<IperfResult> {
  const seconds = options.seconds ?? 2;
  if (!(seconds > 0 && seconds <= MAX_SECONDS)) throw new Error(`iperf3 duration ${seconds} s: must be in (0, ${MAX_SECONDS}]`);
  const protocol = options.protocol ?? 'tcp';
  const port = options.port ?? DEFAULT_IPERF_PORT;
  const server = lab.spawn(options.server, 'iperf3', ['-s', '-1', '-B', options.address, '-p', String(port)], { stdio: 'pipe' });
  let serverOutput = '';
  server.stdout?.on('data', (chunk: Buffer) => { serverOutput += chunk.toString(); });
  server.stderr?.on('data', (chunk: Buffer) => { serverOutput += chunk.toString(); });
  try {
    await waitForListener(lab, options.server, port, server, () => serverOutput);
    const args = ['-c', options.address, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '3000'];
    if (protocol === 'udp') {
      args.push('-u', '-b', '0');
      if (options.udpPacketSize !== undefined) args.push('-l', String(options.udpPacketSize));
    }
    if (options.streams !== undefined) args.push('-P', String(options.streams));
    if (options.reverse) args.push('-R');
    if (options.mss !== undefined) args.push('-M', String(options.mss));
    const { stdout } = await lab.exec(options.client, 'iperf3', args, { timeoutMs: seconds * 1000 + CLIENT_SLACK_MS });
    return parseIperfJson(stdout);
  } finally {
    if (server.exitCode === null && server.signalCode === null) {
      server.kill('SIGKILL');
      await once(server, 'close');
    }
  }
}

/** Polls the server's namespace until iperf3's control port listens (its own output is block-buffered in a pipe). */
async function waitForListener(lab: Lab, node: InNamespace, port: number, server: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`iperf3 server in ${node.netns} exited before listening: ${output().trim()}`);
    }
    const { stdout } = await lab.exec(node, 'ss', ['-Hltn', `sport = :${port}`]);
    if (stdout.trim().length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`iperf3 server in ${node.netns} not listening on port ${port} after ${SERVER_READY_TIMEOUT_MS} ms`);
}

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
  jitter_ms?: number;
}

interface IperfReport {
  error?: string;
  start?: { test_start?: { protocol?: string } };
  end?: { sum_sent?: IperfSum; sum_received?: IperfSum; sum?: IperfSum };
}

/** Parses `iperf3 -J` client output (3.x; UDP totals are in `sum_received` since 3.?, in `sum` before). */
export function parseIperfJson(text: string): IperfResult {
  let report: IperfReport;
  try {
    report = JSON.parse(text) as IperfReport;
  } catch {
    throw new Error(`iperf3 output is not JSON: ${text.slice(0, 200)}`);
  }
  if (report.error) throw new Error(`iperf3 failed: ${report.error}`);
  const protocol = report.start?.test_start?.protocol === 'UDP' ? 'udp' : 'tcp';
  const end = report.end;
  const received = end?.sum_received ?? end?.sum;
  if (received === undefined || typeof received.bits_per_second !== 'number') {
    throw new Error('iperf3 output has no end-of-test totals');
  }
  const seconds = received.seconds ?? 0;
  const gbitPerSecond = received.bits_per_second / 1e9;
  const bytes = received.bytes ?? 0;
  if (protocol === 'tcp') {
    return {
      protocol, seconds, gbitPerSecond, bytes,
      retransmits: end?.sum_sent?.retransmits ?? null,
      packetsPerSecond: null, lostPackets: null, lossPercent: null, jitterMs: null,
    };
  }
  // For UDP the receiver's `packets` counts what was expected, lost ones included.
  const expected = received.packets ?? 0;
  const lost = received.lost_packets ?? 0;
  return {
    protocol, seconds, gbitPerSecond, bytes,
    retransmits: null,
    packetsPerSecond: seconds > 0 ? (expected - lost) / seconds : 0,
    lostPackets: lost,
    lossPercent: received.lost_percent ?? (expected > 0 ? (100 * lost) / expected : 0),
    jitterMs: received.jitter_ms ?? null,
  };
}
