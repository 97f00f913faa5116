// Keeping this node's lease alive (flannel's RenewLease and the lease loop in pkg/subnet/watch.go / main.go): renewed
// renewMarginSeconds before expiry, retried every retrySeconds after an error, re-created at once when its key is
// absent (deleted, expired), and given up (onLost) only when our own key holds another node's valid lease.
import type { Watch } from '../store/store';
import { formatCidr, formatIPv4 } from '../wire/address';
import { type Lease, formatLeaseAttrs, formatLeaseSubnets, isHeldBy, parseLeaseAttrs, subnetKey } from './lease';
import { expiry } from './lease-acquire';
import { type LeaseContext, errorText } from './lease-store';

/** Our subnet is held by someone else now; renewing cannot get it back. */
export class LeaseLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseLostError';
  }
}

export interface KeepHandlers {
  /** The lease is gone for good (another node holds the subnet now); the keeper has stopped. */
  onLost(lease: Lease, error: Error): void;
  onRenewed?(lease: Lease): void;
}

export interface LeaseKeeper {
  /** The lease as last written (its expiresAt moves with each renewal). */
  readonly lease: Lease;
  stop(): void;
}

/** Renewals that find the key changed between read and write this many times in a row give up (and are retried). */
const CAS_RETRIES = 10;

/** Node's timers overflow (and fire at once) past 2^31-1 ms; a very long TTL is just renewed early. */
const MAX_TIMER_MS = 0x7fffffff;

function holderText(nodeName: string | undefined, publicIp: number): string {
  return nodeName === undefined ? formatIPv4(publicIp) : `node ${nodeName} (${formatIPv4(publicIp)})`;
}

/**
 * Writes the lease again with a fresh TTL. A lease that vanished (deleted, or expired during an outage) is re-created
 * at once, if still absent (a node that wrote the key first wins: the next attempt reads its value). Only our own key
 * decides; a valid lease of another node there (isHeldBy: another node name, or our name at another address, i.e. a
 * second process using our name) throws LeaseLostError.
 */
export async function renewLease(ctx: LeaseContext, lease: Lease): Promise<Lease> {
  const key = subnetKey(ctx.prefix, lease.subnet, lease.subnet6);
  const subnet = formatLeaseSubnets(lease.subnet, lease.subnet6);
  const value = formatLeaseAttrs(lease.attrs);
  for (let attempt = 1; attempt <= CAS_RETRIES; attempt++) {
    const kv = await ctx.store.get(key);
    if (!kv) {
      // Only our own key decides: other keys overlapping our subnet (a stray /25, a refused /16, an unreadable value,
      // a duplicate under another spelling) are refused by every validator and hold nothing; flannel's registry
      // likewise re-creates the key (create-if-absent) on renew. A node that takes the subnet writes this very key.
      if (!(await ctx.store.put(key, value, { ttlSeconds: ctx.ttlSeconds, ifAbsent: true }))) continue;
      ctx.log.warn('our lease had vanished from the store; re-created it', { subnet });
      return { ...lease, expiresAt: expiry(ctx, ctx.ttlSeconds) };
    }
    try {
      const holder = parseLeaseAttrs(kv.value);
      if (!isHeldBy(holder, lease.attrs)) {
        throw new LeaseLostError(`lease ${subnet} was lost: it is leased to ${holderText(holder.nodeName, holder.publicIp)} now`);
      }
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      ctx.log.warn('our lease key holds an unreadable value; writing ours over it', { subnet, error: errorText(err) });
    }
    const ttlSeconds = !kv.hasTtl && lease.expiresAt === undefined ? undefined : ctx.ttlSeconds;
    if (!(await ctx.store.put(key, value, { ttlSeconds, ifModRevision: kv.modRevision }))) continue;
    return { ...lease, expiresAt: expiry(ctx, ttlSeconds) };
  }
  throw new Error(`could not renew lease ${subnet}: it changed under us ${CAS_RETRIES} times in a row`);
}

/**
 * Keeps the lease alive: renews it renewMarginSeconds before expiry, retries every retrySeconds after an error, and
 * re-creates it at once when it is deleted from the store. Calls onLost (and stops) when another node holds it.
 */
export function keepLease(ctx: LeaseContext, lease: Lease, handlers: KeepHandlers): LeaseKeeper {
  const key = subnetKey(ctx.prefix, lease.subnet, lease.subnet6);
  const subnet = formatLeaseSubnets(lease.subnet, lease.subnet6);
  const marginMs = Math.min(ctx.renewMarginSeconds, ctx.ttlSeconds / 2) * 1000;
  let current = lease;
  let timer: unknown;
  let watchRetryTimer: unknown;
  let watch: Watch | undefined;
  let stopped = false;
  let renewing = false;
  let renewAgain = false;

  const schedule = (delayMs: number): void => {
    if (timer !== undefined) ctx.timers.clearTimeout(timer);
    timer = ctx.timers.setTimeout(() => {
      timer = undefined;
      void renewNow();
    }, Math.min(MAX_TIMER_MS, Math.max(0, delayMs)));
  };
  const scheduleNext = (): void => {
    // A reservation (no TTL) needs no renewal; the watch still re-creates it if it is deleted.
    if (current.expiresAt === undefined) return;
    schedule(current.expiresAt - marginMs - ctx.now());
  };

  const stop = (): void => {
    stopped = true;
    if (timer !== undefined) ctx.timers.clearTimeout(timer);
    if (watchRetryTimer !== undefined) ctx.timers.clearTimeout(watchRetryTimer);
    timer = watchRetryTimer = undefined;
    watch?.close();
    watch = undefined;
  };

  const renewNow = async (): Promise<void> => {
    if (stopped) return;
    if (renewing) {
      renewAgain = true;
      return;
    }
    renewing = true;
    try {
      const renewed = await renewLease(ctx, current);
      if (stopped) return;
      current = renewed;
      ctx.log.debug('lease renewed', { subnet, expiresAt: renewed.expiresAt });
      scheduleNext();
      try {
        handlers.onRenewed?.(renewed);
      } catch (err) {
        ctx.log.error('lease onRenewed handler threw', { error: errorText(err) });
      }
    } catch (err) {
      if (stopped) return;
      if (err instanceof LeaseLostError) {
        ctx.log.error(err.message, { subnet });
        stop();
        handlers.onLost(current, err);
        return;
      }
      ctx.log.warn(`renewing the lease failed; retrying in ${ctx.retrySeconds}s`, { subnet, error: errorText(err) });
      schedule(ctx.retrySeconds * 1000);
    } finally {
      renewing = false;
      if (renewAgain && !stopped) {
        renewAgain = false;
        void renewNow();
      }
    }
  };

  const watchOwnKey = async (): Promise<void> => {
    const { revision } = await ctx.store.list(key);
    if (stopped) return;
    watch = ctx.store.watch(key, revision + 1, {
      onEvents: (events) => {
        for (const event of events) {
          if (event.type === 'delete' && event.key === key) {
            ctx.log.warn('our lease was deleted from the store; re-creating it', { subnet });
            void renewNow();
          } else if (event.type === 'put' && event.kv.key === key) {
            let ours = false;
            try {
              ours = isHeldBy(parseLeaseAttrs(event.kv.value), current.attrs);
            } catch {
              ours = false;
            }
            if (!ours) void renewNow(); // renew finds out whether it is lost
          }
        }
      },
      onResync: () => void renewNow(),
    });
  };
  const startWatch = (): void => {
    watchOwnKey().catch((err: unknown) => {
      if (stopped) return;
      ctx.log.warn(`watching our lease failed; retrying in ${ctx.retrySeconds}s`, { subnet, error: errorText(err) });
      watchRetryTimer = ctx.timers.setTimeout(startWatch, ctx.retrySeconds * 1000);
    });
  };

  scheduleNext();
  startWatch();
  return {
    get lease() {
      return current;
    },
    stop,
  };
}
