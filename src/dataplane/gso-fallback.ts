// Which underlay destinations get UDP GSO. The kernel refuses a GSO send when the route's device cannot segment or
// checksum it (EIO), and, on kernels before the 2024 UDP GSO fixes, with EINVAL for routes whose MTU or offloads do
// not fit (net/ipv4/udp.c udp_send_skb; wireguard-go conn/ turns GSO off on EIO). That is a property of one route, not
// of the socket: so a refusal moves only that destination to one-by-one sends, is counted and logged once, and GSO is
// tried again after RETRY_MS, the wait doubling (up to MAX_RETRY_MS) while the kernel keeps refusing.
import type { Counters } from './counters';
import type { DataPlaneLog } from './log';

/** First wait before GSO is tried again for a destination that refused it, in ms. */
export const GSO_RETRY_MS = 30_000;
/** The wait stops doubling here (30 minutes). */
export const GSO_MAX_RETRY_MS = 30 * 60_000;


export interface GsoFallbackOptions {
  /** Milliseconds on a monotonic clock (default performance.now); tests inject their own. */
  now?: () => number;
  retryMs?: number;
  maxRetryMs?: number;
  log?: DataPlaneLog;
}

interface Refusal {
  /** When GSO may be tried again (on the `now` clock). */
  retryAt: number;
  /** The wait after the next refusal. */
  nextWaitMs: number;
  /** Refusals in a row. */
  refusals: number;
}

/** Formats an IPv4 u32 for the log without importing the wire layer's helpers into the hot path. */
function dotted(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

export class GsoFallback {
  private readonly refused = new Map<number, Refusal>();
  private readonly now: () => number;
  private readonly retryMs: number;
  private readonly maxRetryMs: number;

  constructor(
    private readonly counters: Counters,
    private readonly options: GsoFallbackOptions = {},
  ) {
    this.now = options.now ?? (() => performance.now());
    this.retryMs = options.retryMs ?? GSO_RETRY_MS;
    this.maxRetryMs = options.maxRetryMs ?? GSO_MAX_RETRY_MS;
    if (!(this.retryMs > 0 && this.maxRetryMs >= this.retryMs)) throw new Error(`GSO retry: need 0 < retryMs <= maxRetryMs, got ${this.retryMs} and ${this.maxRetryMs}`);
  }

  /** True when GSO may be used toward `addr` now: it never refused, or its wait is over (a retry). One map probe. */
  allowed(addr: number): boolean {
    if (this.refused.size === 0) return true;
    const refusal = this.refused.get(addr);
    return refusal === undefined || this.now() >= refusal.retryAt;
  }

  /** The kernel refused a GSO send toward `addr` (the segments went one by one): wait before trying again. */
  refusedBy(addr: number): void {
    this.counters.gsoFallbacks++;
    const refusal = this.refused.get(addr);
    if (refusal === undefined) {
      this.refused.set(addr, { retryAt: this.now() + this.retryMs, nextWaitMs: Math.min(2 * this.retryMs, this.maxRetryMs), refusals: 1 });
      this.counters.gsoFallbackPeers = this.refused.size;
      this.options.log?.warn('the kernel refused UDP GSO toward this peer: sending its segments one by one, other peers keep GSO', {
        peer: dotted(addr),
        retryInSeconds: this.retryMs / 1000,
      });
      return;
    }
    refusal.refusals++;
    refusal.retryAt = this.now() + refusal.nextWaitMs;
    refusal.nextWaitMs = Math.min(2 * refusal.nextWaitMs, this.maxRetryMs);
  }

  /** A GSO send toward `addr` went through: a destination that had refused it gets GSO back for good. */
  accepted(addr: number): void {
    if (this.refused.size === 0) return;
    const refusal = this.refused.get(addr);
    if (refusal === undefined) return;
    this.refused.delete(addr);
    this.counters.gsoFallbackPeers = this.refused.size;
    this.options.log?.info('UDP GSO toward this peer works again', { peer: dotted(addr), refusals: refusal.refusals });
  }

  /** Destinations sending one by one now, with the wait left (ms) before the next GSO try, for status and tests. */
  snapshot(): { peer: string; refusals: number; retryInMs: number }[] {
    const now = this.now();
    return [...this.refused].map(([addr, r]) => ({ peer: dotted(addr), refusals: r.refusals, retryInMs: Math.max(0, Math.round(r.retryAt - now)) }));
  }
}
