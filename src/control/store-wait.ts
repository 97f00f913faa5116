// Patience with a store that is not there yet. flanneld, started before etcd answers (node boot order, an etcd
// member restarting, a loaded machine), keeps retrying its first read once a second and logs each failure
// (flannel main.go, getConfig); an agent that exits instead leaves a node without a data plane until someone restarts
// it. vxtun waits the same way at start, bounded by --store-wait, with doubling delays and full jitter so that many
// agents starting together do not hammer the store in step. (A plain loop: the wait must end at the bound, which a
// retry library's back-off does not know about.)
import { StoreError } from '../store/store';
import type { Logger } from './log';

/** Default bound on waiting for the store at start, in ms; `vxtun agent --store-wait` sets it. */
export const DEFAULT_STORE_WAIT_MS = 60_000;

export interface StoreWaitOptions {
  /** Stop retrying once this many ms have passed since the first attempt began; 0 means one attempt. */
  waitMs: number;
  log: Logger;
  /** First delay between attempts in ms (default 500); it doubles up to maxDelayMs (default 5 s), with full jitter. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** A store error that waiting can cure: the store did not answer (StoreError 'UNAVAILABLE'). */
export function isStoreUnavailable(error: unknown): boolean {
  return error instanceof StoreError && error.code === 'UNAVAILABLE';
}

/**
 * Runs `attempt` until it succeeds, retrying while it fails with an unavailable store and `waitMs` has not passed;
 * no delay runs past the bound. Each failed attempt is logged as a warning naming `what`, the time left and the
 * store's own message (which says how to check it). Any other error is thrown as it came; an unavailable store at the
 * bound is thrown as a StoreError that says the wait is over.
 */
export async function waitForStore<T>(what: string, attempt: () => Promise<T>, options: StoreWaitOptions): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  const maxDelay = options.maxDelayMs ?? 5_000;
  let ceiling = options.initialDelayMs ?? 500;
  for (let attempts = 1; ; attempts++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isStoreUnavailable(error)) throw error;
      const left = deadline - Date.now();
      if (left <= 0) {
        if (options.waitMs === 0) throw error;
        const seconds = Number((options.waitMs / 1000).toFixed(1));
        throw new StoreError(`gave up after ${attempts} attempts in ${seconds} s (--store-wait ${seconds}): ${(error as Error).message}`, 'UNAVAILABLE');
      }
      const delay = Math.min(left, Math.random() * ceiling);
      ceiling = Math.min(maxDelay, ceiling * 2);
      options.log.warn(`store unreachable at start: cannot ${what} yet; retrying for up to ${Math.ceil(left / 1000)} s more (--store-wait)`, {
        error: (error as Error).message,
        retryInMs: Math.round(delay),
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
