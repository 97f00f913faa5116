// The watch of <prefix>/subnets/ (flannel's WatchLeases): list, deliver a snapshot, then deliver changes as
// added/removed lease events, listing again when the store lost history. Every key passes the LeaseValidator first,
// so what reaches the handlers is only what may reach the tables; what was refused is in `refused`.
import type { Watch } from '../store/store';
import { type Lease, subnetsPrefix } from './lease';
import { type LeaseContext, errorText, listLeaseRecords, recordFromKeyValue } from './lease-store';
import { type LeaseChecks, type LeaseEvent, LeaseValidator, type RefusedLease } from './lease-validator';

export interface LeaseWatchHandlers {
  /** The whole set of accepted leases: at start and after the store lost history. Replaces whatever came before. */
  onSnapshot(leases: Lease[]): void;
  onEvents(events: LeaseEvent[]): void;
  onConnectionChange?(connected: boolean, error?: Error): void;
}

export interface LeaseWatchOptions {
  /** Check leases against the running network config and our lease (lease-validator.ts); without, only parsing. */
  checks?: LeaseChecks;
}

export interface LeaseWatch {
  /** Keys under subnets/ kept from the tables, and why. */
  readonly refused: RefusedLease[];
  close(): void;
}

/** Lists the leases, delivers them as a snapshot, then watches for changes (re-listing when history is lost). */
export async function watchLeases(ctx: LeaseContext, handlers: LeaseWatchHandlers, options: LeaseWatchOptions = {}): Promise<LeaseWatch> {
  const prefix = subnetsPrefix(ctx.prefix);
  const validator = new LeaseValidator(ctx.log, options.checks);
  let watch: Watch | undefined;
  let retryTimer: unknown;
  let generation = 0;
  let closed = false;

  const deliver = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      ctx.log.error(`lease watch ${what} handler threw`, { error: errorText(err) });
    }
  };

  const start = async (): Promise<void> => {
    const gen = ++generation;
    watch?.close();
    watch = undefined;
    const { records, revision } = await listLeaseRecords(ctx);
    if (closed || gen !== generation) return;
    const leases = validator.snapshot(records);
    deliver('snapshot', () => handlers.onSnapshot(leases));
    watch = ctx.store.watch(prefix, revision + 1, {
      onEvents: (events) => {
        if (closed || gen !== generation) return;
        const out: LeaseEvent[] = [];
        const now = ctx.now();
        for (const event of events) {
          out.push(...(event.type === 'put' ? validator.put(recordFromKeyValue(event.kv, now, ctx.prefix)) : validator.delete(event.key)));
        }
        if (out.length > 0) deliver('events', () => handlers.onEvents(out));
      },
      onResync: () => {
        if (closed || gen !== generation) return;
        ctx.log.warn('lease watch lost history; listing leases again');
        restart();
      },
      onConnectionChange: (connected, error) => {
        if (closed || gen !== generation) return;
        deliver('connection', () => handlers.onConnectionChange?.(connected, error));
      },
    });
  };

  const restart = (): void => {
    start().catch((err: unknown) => {
      if (closed) return;
      ctx.log.error(`listing leases failed; retrying in ${ctx.retrySeconds}s`, { store: ctx.store.url, error: errorText(err) });
      deliver('connection', () => handlers.onConnectionChange?.(false, err instanceof Error ? err : new Error(String(err))));
      retryTimer = ctx.timers.setTimeout(restart, ctx.retrySeconds * 1000);
    });
  };

  await start();
  return {
    get refused() {
      return validator.refused;
    },
    close: () => {
      closed = true;
      watch?.close();
      if (retryTimer !== undefined) ctx.timers.clearTimeout(retryTimer);
    },
  };
}
