// Reachability and latency across the lab: `ping -c N -i 0.2 -W 1`, parsed into counts and rtt percentiles.
// No replies is a result (received 0), not an error: tests assert on it both ways.

import { CommandError } from './shell';
import type { InNamespace, Lab } from './topology';

export interface PingOptions {
  /** Echo requests to send (default 5). */
  count?: number;
  /** Seconds between requests (default 0.2). */
  intervalSeconds?: number;
  /** Seconds to wait for each reply (default 1). */
  replyTimeoutSeconds?: number;
  /** ICMP payload bytes, -s (default ping's 56). */
  size?: number;
  /** Source address or device, -I. */
  source?: string;
  /** -M do (true: DF set, never fragmented locally) or -M dont (false: DF clear); default ping's own choice. */
  dontFragment?: boolean;
}

export interface PingResult {
  transmitted: number;
  received: number;
  lossPercent: number;
  /** Per-reply round-trip times in ms, in arrival order. */
  rttsMs: number[];
  /** null when no reply came. */
  rtt: { minMs: number; avgMs: number; maxMs: number; p50Ms: number; p99Ms: number } | null;
}

export async function ping(lab: Lab, from: InNamespace, address: string, options: PingOptions = {}): Promise<PingResult> {
  const count = options.count ?? 5;
  const interval = options.intervalSeconds ?? 0.2;
  const wait = options.replyTimeoutSeconds ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new Error(`invalid ping count ${count}`);
  const args = ['-n', '-c', String(count), '-i', String(interval), '-W', String(wait)];
  if (options.size !== undefined) args.push('-s', String(options.size));
  if (options.source !== undefined) args.push('-I', options.source);
  if (options.dontFragment !== undefined) args.push('-M', options.dontFragment ? 'do' : 'dont');
  args.push(address);
  const timeoutMs = Math.ceil((count * interval + wait) * 1000) + 5_000;
  let stdout: string;
  try {
    stdout = (await lab.exec(from, 'ping', args, { timeoutMs })).stdout;
  } catch (error) {
    // ping exits 1 when replies are missing; that is an answer. Anything else (2: bad arguments...) is a failure.
    if (!(error instanceof CommandError && error.exitCode === 1)) throw error;
    stdout = error.stdout;
  }
  return parsePingOutput(stdout);
}

/** Parses iputils ping output. */
export function parsePingOutput(text: string): PingResult {
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(text);
  if (summary === null) throw new Error(`not ping output: ${text.slice(0, 200)}`);
  const transmitted = Number(summary[1]);
  const received = Number(summary[2]);
  const rttsMs: number[] = [];
  for (const match of text.matchAll(/icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms/g)) rttsMs.push(Number(match[1]));
  const sorted = [...rttsMs].sort((a, b) => a - b);
  const rtt = sorted.length === 0 ? null : {
    minMs: sorted[0]!,
    avgMs: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
    maxMs: sorted[sorted.length - 1]!,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
  return { transmitted, received, lossPercent: transmitted > 0 ? (100 * (transmitted - received)) / transmitted : 0, rttsMs, rtt };
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error('percentile of no values');
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}
