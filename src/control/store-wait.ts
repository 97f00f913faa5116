// Patience with a store that is not there yet. flanneld, started before etcd answers (node boot order, an etcd
// member restarting, a loaded machine), keeps retrying its first read once a second and logs each failure
// (flannel main.go, getConfig); an agent that exits instead leaves a node without a data plane until someone restarts
// it. vxtun waits the same way at start, bounded by --store-wait, with back-off and jitter so that many agents
// starting together do not hammer the store in step.
import { ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { StoreError } from '../store/store';
import type { Logger } from './log';

/** Default bound on waiting for the store at start, in ms; `vxtun agent --store-wait` sets it. */
export const DEFAULT_STORE_WAIT_MS = 60_000;

export interface StoreWaitOptions {
  /** Give up (rethrow the last error) once this many ms have passed since the first attempt; 0 means one attempt. */
  waitMs: number;
  log: Logger;
  /** First delay between attempts in ms (default 500); it doubles with jitter up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** A store error that waiting can cure: the store did not answer (StoreError 'UNAVAILABLE'). */
export function isStoreUnavailable(error: unknown): boolean {
  return error instanceof StoreError && error.code === 'UNAVAILABLE';
}

/**
 * Runs `attempt` until it succeeds, retrying while it fails with an unavailable store and `waitMs` has not passed.
 * Each failed attempt is logged as a warning naming `what` and the store's own message (which says how to check it).
 * Any other error, or the last one after `waitMs`, is thrown as it came.
 */
export async function waitForStore<T>(what: string, attempt: () => Promise<T>, options: StoreWaitOptions): Promise<T> {
  const deadline = Date.now() + options.waitMs;
  const policy = retry(
    handleWhen((error) => isStoreUnavailable(error) && Date.now() < deadline),
    { maxAttempts: Number.MAX_SAFE_INTEGER, backoff: new ExponentialBackoff({ initialDelay: options.initialDelayMs ?? 500, maxDelay: options.maxDelayMs ?? 5_000 }) },
  );
  policy.onRetry((event) => {
    const error = 'error' in event ? event.error : undefined;
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    options.log.warn(`store unreachable at start: cannot ${what} yet; retrying for up to ${left} s more (--store-wait)`, {
      error: error?.message,
      retryInMs: Math.round(event.delay),
    });
  });
  return policy.execute(() => attempt());
}
