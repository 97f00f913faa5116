// The lease manager: flannel's pkg/subnet Manager over our Store seam. It acquires this node's subnet in flannel's
// order (the lease of our PublicIP, then the subnet we had before, then a random free one), keeps it alive, and
// turns the store's watch of <prefix>/subnets/ into lease snapshots and added/removed events.

import { Cidr, cidrContains, formatCidr, formatIPv4, prefixMask } from '../wire/address';
import type { KeyValue, Store, Watch, WatchEvent } from '../store/store';
import { Lease, LeaseAttrs, DEFAULT_PREFIX, configKey, formatLeaseAttrs, parseLeaseAttrs, parseSubnetKey, subnetKey, subnetsPrefix } from './lease';
import { NetworkConfig, NetworkConfigError, parseNetworkConfig } from './network-config';
import { Logger, nullLogger } from './log';

export interface LeaseEvent {
  /** 'added' for a subnet already known replaces it (a node restarted with a new VTEP MAC, or renewed). */
  type: 'added' | 'removed';
  lease: Lease;
}

export interface LeaseWatchHandlers {
  /** The whole set of leases: at start and after the store lost history. Replaces whatever came before. */
  onSnapshot(leases: Lease[]): void;
  onEvents(events: LeaseEvent[]): void;
  onConnectionChange?(connected: boolean, error?: Error): void;
}

export interface LeaseWatch {
  close(): void;
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

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface LeaseManagerOptions {
  store: Store;
  prefix?: string;
  /** The network config; when absent, read from <prefix>/config at each acquire (as flanneld does). */
  config?: NetworkConfig;
  /** Lease TTL; flannel's is 24 h. */
  ttlSeconds?: number;
  /** Renew this long before expiry (flannel: 1 h); at most half the TTL. */
  renewMarginSeconds?: number;
  /** After a failed renewal (or re-list), try again this much later (flannel: 1 min). */
  retrySeconds?: number;
  random?: () => number;
  now?: () => number;
  timers?: Timers;
  log?: Logger;
}

/** Our subnet is held by someone else now; renewing cannot get it back. */
export class LeaseLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseLostError';
  }
}

/** No free subnet is left between SubnetMin and SubnetMax. */
export class NetworkFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkFullError';
  }
}

/** flannel retries a lost create race 10 times; each retry re-lists, so losing them all means heavy contention. */
const RACE_RETRIES = 10;

/** Node's timers overflow (and fire at once) past 2^31-1 ms; a very long TTL is just renewed early. */
const MAX_TIMER_MS = 0x7fffffff;

interface LeaseEntry {
  kv: KeyValue;
  lease: Lease;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export function subnetsOverlap(a: Cidr, b: Cidr): boolean {
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return ((longer.address & prefixMask(shorter.prefixLength)) >>> 0) === shorter.address;
}

/** flannel's isSubnetConfigCompat: the right length and between SubnetMin and SubnetMax. */
export function subnetFitsConfig(config: NetworkConfig, subnet: Cidr): boolean {
  return (
    subnet.prefixLength === config.subnetLen &&
    subnet.address >= config.subnetMin &&
    subnet.address <= config.subnetMax &&
    cidrContains(config.network, subnet.address)
  );
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class LeaseManager {
  readonly store: Store;
  readonly prefix: string;
  readonly ttlSeconds: number;
  private readonly config?: NetworkConfig;
  private readonly renewMarginSeconds: number;
  private readonly retrySeconds: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly timers: Timers;
  private readonly log: Logger;

  constructor(options: LeaseManagerOptions) {
    this.store = options.store;
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '');
    this.config = options.config;
    this.ttlSeconds = options.ttlSeconds ?? 86400;
    if (!(this.ttlSeconds > 0)) throw new Error(`lease ttlSeconds must be positive, got ${this.ttlSeconds}`);
    this.renewMarginSeconds = options.renewMarginSeconds ?? 3600;
    this.retrySeconds = options.retrySeconds ?? 60;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.timers = options.timers ?? realTimers;
    this.log = options.log ?? nullLogger;
  }

  // ---- network config ------------------------------------------------------------------------------------

  async readNetworkConfig(): Promise<NetworkConfig> {
    const key = configKey(this.prefix);
    const kv = await this.store.get(key);
    if (!kv) throw new Error(`no network config at ${key}: run "vxtun init --network CIDR" first`);
    try {
      return parseNetworkConfig(kv.value);
    } catch (err) {
      if (err instanceof NetworkConfigError) throw new NetworkConfigError(`network config at ${key}: ${err.detail}`, err.detail);
      throw err;
    }
  }

  /**
   * Stores the network config after checking it. An existing, different config is only replaced with
   * `replace: true`: changing Network under running nodes strands their leases.
   */
  async writeNetworkConfig(json: string, options: { replace?: boolean } = {}): Promise<void> {
    parseNetworkConfig(json);
    const key = configKey(this.prefix);
    if (options.replace) {
      await this.store.put(key, json);
      return;
    }
    if (await this.store.put(key, json, { ifAbsent: true })) return;
    const existing = await this.store.get(key);
    if (existing && existing.value !== json) {
      throw new Error(`a different network config already exists at ${key}: ${existing.value} (replace it explicitly to change it)`);
    }
  }

  // ---- listing and watching ------------------------------------------------------------------------------

  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    const { entries, revision } = await this.scan();
    return { leases: entries.map((e) => e.lease), revision };
  }

  /** Lists the leases, delivers them as a snapshot, then watches for changes (re-listing when history is lost). */
  async watchLeases(handlers: LeaseWatchHandlers): Promise<LeaseWatch> {
    const prefix = subnetsPrefix(this.prefix);
    let known = new Map<string, Lease>();
    let watch: Watch | undefined;
    let retryTimer: unknown;
    let generation = 0;
    let closed = false;

    const deliver = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        this.log.error(`lease watch ${what} handler threw`, { error: errorText(err) });
      }
    };

    const convert = (events: WatchEvent[]): LeaseEvent[] => {
      const out: LeaseEvent[] = [];
      for (const event of events) {
        const key = event.type === 'put' ? event.kv.key : event.key;
        if (!parseSubnetKey(key)) {
          this.log.warn('ignoring a key under subnets/ that names no subnet', { key });
          continue;
        }
        const old = known.get(key);
        if (event.type === 'delete') {
          if (old) {
            known.delete(key);
            out.push({ type: 'removed', lease: old });
          }
          continue;
        }
        const lease = this.leaseFromKeyValue(event.kv);
        if (lease) {
          known.set(key, lease);
          out.push({ type: 'added', lease });
        } else if (old) {
          // The value turned unreadable: the old attributes no longer hold, so the lease is gone for us.
          known.delete(key);
          out.push({ type: 'removed', lease: old });
        }
      }
      return out;
    };

    const start = async (): Promise<void> => {
      const gen = ++generation;
      watch?.close();
      watch = undefined;
      const { entries, revision } = await this.scan();
      if (closed || gen !== generation) return;
      known = new Map(entries.map((e) => [e.kv.key, e.lease]));
      deliver('snapshot', () => handlers.onSnapshot(entries.map((e) => e.lease)));
      watch = this.store.watch(prefix, revision + 1, {
        onEvents: (events) => {
          if (closed || gen !== generation) return;
          const leaseEvents = convert(events);
          if (leaseEvents.length > 0) deliver('events', () => handlers.onEvents(leaseEvents));
        },
        onResync: () => {
          if (closed || gen !== generation) return;
          this.log.warn('lease watch lost history; listing leases again');
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
        this.log.error(`listing leases failed; retrying in ${this.retrySeconds}s`, { store: this.store.url, error: errorText(err) });
        deliver('connection', () => handlers.onConnectionChange?.(false, err instanceof Error ? err : new Error(String(err))));
        retryTimer = this.timers.setTimeout(restart, this.retrySeconds * 1000);
      });
    };

    await start();
    return {
      close: () => {
        closed = true;
        watch?.close();
        if (retryTimer !== undefined) this.timers.clearTimeout(retryTimer);
      },
    };
  }

  // ---- acquiring -------------------------------------------------------------------------------------

  /**
   * Acquires this node's lease, in flannel's order: the lease whose PublicIP is ours (its attrs updated), else
   * `previousSubnet` (from subnet.env) when free and inside the config, else a random free subnet.
   */
  async acquire(attrs: LeaseAttrs, options: { previousSubnet?: Cidr } = {}): Promise<Lease> {
    const config = this.config ?? (await this.readNetworkConfig());
    for (let attempt = 1; attempt <= RACE_RETRIES; attempt++) {
      const { entries } = await this.scan();
      const lease = await this.tryAcquire(config, attrs, options.previousSubnet, entries);
      if (lease) return lease;
      this.log.debug('lost a race for a subnet; trying again', { attempt });
    }
    throw new Error(
      `could not acquire a subnet under ${subnetsPrefix(this.prefix)}: another node won each of ${RACE_RETRIES} attempts; try again`,
    );
  }

  private async tryAcquire(
    config: NetworkConfig,
    attrs: LeaseAttrs,
    previousSubnet: Cidr | undefined,
    entries: LeaseEntry[],
  ): Promise<Lease | undefined> {
    const publicIp = formatIPv4(attrs.publicIp);
    const mine = entries.find((e) => e.lease.attrs.publicIp === attrs.publicIp);
    if (mine) {
      const subnet = mine.lease.subnet;
      if (subnetFitsConfig(config, subnet) && mine.kv.key === subnetKey(this.prefix, subnet)) {
        // A key without TTL is a reservation: keep it one.
        const ttlSeconds = mine.kv.hasTtl ? this.ttlSeconds : undefined;
        const written = await this.store.put(mine.kv.key, formatLeaseAttrs(attrs), { ttlSeconds, ifModRevision: mine.kv.modRevision });
        if (!written) return undefined;
        this.log.info('reusing the lease of our public IP', { subnet: formatCidr(subnet), publicIp });
        return { subnet, attrs, expiresAt: this.expiry(ttlSeconds) };
      }
      this.log.warn('the lease of our public IP does not fit the network config; deleting it', {
        subnet: formatCidr(subnet),
        publicIp,
        network: formatCidr(config.network),
        subnetLen: config.subnetLen,
      });
      await this.store.delete(mine.kv.key);
      entries = entries.filter((e) => e !== mine);
    }

    const leases = entries.map((e) => e.lease);
    let subnet: Cidr | undefined;
    if (previousSubnet) {
      const previous = formatCidr(previousSubnet);
      if (!subnetFitsConfig(config, previousSubnet)) {
        this.log.warn('the previous subnet does not fit the network config; ignoring it', { subnet: previous });
      } else if (leases.some((l) => subnetsOverlap(l.subnet, previousSubnet))) {
        this.log.info('the previous subnet is leased by another node now', { subnet: previous });
      } else {
        subnet = previousSubnet;
      }
    }
    subnet ??= this.pickFreeSubnet(config, leases);

    const key = subnetKey(this.prefix, subnet);
    const created = await this.store.put(key, formatLeaseAttrs(attrs), { ttlSeconds: this.ttlSeconds, ifAbsent: true });
    if (!created) return undefined;
    this.log.info(subnet === previousSubnet ? 'reusing the previous subnet' : 'acquired a new subnet', {
      subnet: formatCidr(subnet),
      publicIp,
    });
    return { subnet, attrs, expiresAt: this.expiry(this.ttlSeconds) };
  }

  /** A uniformly random free subnet between SubnetMin and SubnetMax; throws NetworkFullError when none is. */
  private pickFreeSubnet(config: NetworkConfig, leases: Lease[]): Cidr {
    const size = 2 ** (32 - config.subnetLen);
    const sameLength = new Set<number>();
    const otherLengths: Cidr[] = [];
    for (const lease of leases) {
      if (lease.subnet.prefixLength === config.subnetLen) sameLength.add(lease.subnet.address);
      else otherLengths.push(lease.subnet);
    }
    const isFree = (address: number): boolean =>
      !sameLength.has(address) &&
      (otherLengths.length === 0 || !otherLengths.some((o) => subnetsOverlap(o, { address, prefixLength: config.subnetLen })));

    let free = 0;
    for (let a = config.subnetMin; a <= config.subnetMax; a += size) if (isFree(a)) free++;
    if (free === 0) {
      throw new NetworkFullError(
        `network ${formatCidr(config.network)} has no free /${config.subnetLen} between ${formatIPv4(config.subnetMin)} and ` +
          `${formatIPv4(config.subnetMax)} (${leases.length} leases); widen Network or remove stale leases`,
      );
    }
    let pick = Math.min(free - 1, Math.floor(this.random() * free));
    for (let a = config.subnetMin; ; a += size) {
      if (!isFree(a)) continue;
      if (pick === 0) return { address: a, prefixLength: config.subnetLen };
      pick--;
    }
  }

  // ---- keeping -------------------------------------------------------------------------------------

  /**
   * Writes the lease again with a fresh TTL. A lease that vanished (deleted, or expired during an outage) is
   * re-created when its subnet is still free; one that another node holds now throws LeaseLostError.
   */
  async renew(lease: Lease): Promise<Lease> {
    const key = subnetKey(this.prefix, lease.subnet);
    const subnet = formatCidr(lease.subnet);
    const value = formatLeaseAttrs(lease.attrs);
    for (let attempt = 1; attempt <= RACE_RETRIES; attempt++) {
      const kv = await this.store.get(key);
      if (!kv) {
        const { leases } = await this.listLeases();
        const holder = leases.find((l) => subnetsOverlap(l.subnet, lease.subnet));
        if (holder) {
          throw new LeaseLostError(
            `lease ${subnet} was lost: ${formatCidr(holder.subnet)} is leased to ${formatIPv4(holder.attrs.publicIp)} now`,
          );
        }
        if (!(await this.store.put(key, value, { ttlSeconds: this.ttlSeconds, ifAbsent: true }))) continue;
        this.log.warn('our lease had vanished from the store; re-created it', { subnet });
        return { ...lease, expiresAt: this.expiry(this.ttlSeconds) };
      }
      let holderIp: number | undefined;
      try {
        holderIp = parseLeaseAttrs(kv.value).publicIp;
      } catch (err) {
        this.log.warn('our lease key holds an unreadable value; writing ours over it', { subnet, error: errorText(err) });
      }
      if (holderIp !== undefined && holderIp !== lease.attrs.publicIp) {
        throw new LeaseLostError(`lease ${subnet} was lost: it is leased to ${formatIPv4(holderIp)} now`);
      }
      const ttlSeconds = !kv.hasTtl && lease.expiresAt === undefined ? undefined : this.ttlSeconds;
      if (!(await this.store.put(key, value, { ttlSeconds, ifModRevision: kv.modRevision }))) continue;
      return { ...lease, expiresAt: this.expiry(ttlSeconds) };
    }
    throw new Error(`could not renew lease ${subnet}: it changed under us ${RACE_RETRIES} times in a row`);
  }

  /**
   * Keeps the lease alive: renews it renewMarginSeconds before expiry, retries every retrySeconds after an error,
   * and re-creates it at once when it is deleted from the store. Calls onLost (and stops) when another node holds it.
   */
  keep(lease: Lease, handlers: KeepHandlers): LeaseKeeper {
    const key = subnetKey(this.prefix, lease.subnet);
    const subnet = formatCidr(lease.subnet);
    const marginMs = Math.min(this.renewMarginSeconds, this.ttlSeconds / 2) * 1000;
    let current = lease;
    let timer: unknown;
    let watchRetryTimer: unknown;
    let watch: Watch | undefined;
    let stopped = false;
    let renewing = false;
    let renewAgain = false;

    const schedule = (delayMs: number): void => {
      if (timer !== undefined) this.timers.clearTimeout(timer);
      timer = this.timers.setTimeout(() => {
        timer = undefined;
        void renewNow();
      }, Math.min(MAX_TIMER_MS, Math.max(0, delayMs)));
    };
    const scheduleNext = (): void => {
      // A reservation (no TTL) needs no renewal; the watch still re-creates it if it is deleted.
      if (current.expiresAt === undefined) return;
      schedule(current.expiresAt - marginMs - this.now());
    };

    const stop = (): void => {
      stopped = true;
      if (timer !== undefined) this.timers.clearTimeout(timer);
      if (watchRetryTimer !== undefined) this.timers.clearTimeout(watchRetryTimer);
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
        const renewed = await this.renew(current);
        if (stopped) return;
        current = renewed;
        this.log.debug('lease renewed', { subnet, expiresAt: renewed.expiresAt });
        scheduleNext();
        try {
          handlers.onRenewed?.(renewed);
        } catch (err) {
          this.log.error('lease onRenewed handler threw', { error: errorText(err) });
        }
      } catch (err) {
        if (stopped) return;
        if (err instanceof LeaseLostError) {
          this.log.error(err.message, { subnet });
          stop();
          handlers.onLost(current, err);
          return;
        }
        this.log.warn(`renewing the lease failed; retrying in ${this.retrySeconds}s`, { subnet, error: errorText(err) });
        schedule(this.retrySeconds * 1000);
      } finally {
        renewing = false;
        if (renewAgain && !stopped) {
          renewAgain = false;
          void renewNow();
        }
      }
    };

    const watchOwnKey = async (): Promise<void> => {
      const { revision } = await this.store.list(key);
      if (stopped) return;
      watch = this.store.watch(key, revision + 1, {
        onEvents: (events) => {
          for (const event of events) {
            if (event.type === 'delete' && event.key === key) {
              this.log.warn('our lease was deleted from the store; re-creating it', { subnet });
              void renewNow();
            } else if (event.type === 'put' && event.kv.key === key) {
              let holder: number | undefined;
              try {
                holder = parseLeaseAttrs(event.kv.value).publicIp;
              } catch {
                holder = undefined;
              }
              if (holder !== current.attrs.publicIp) void renewNow(); // renew finds out whether it is lost
            }
          }
        },
        onResync: () => void renewNow(),
      });
    };
    const startWatch = (): void => {
      watchOwnKey().catch((err: unknown) => {
        if (stopped) return;
        this.log.warn(`watching our lease failed; retrying in ${this.retrySeconds}s`, { subnet, error: errorText(err) });
        watchRetryTimer = this.timers.setTimeout(startWatch, this.retrySeconds * 1000);
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

  // ---- helpers -------------------------------------------------------------------------------------

  private expiry(ttlSeconds: number | undefined): number | undefined {
    return ttlSeconds === undefined ? undefined : this.now() + ttlSeconds * 1000;
  }

  /** A lease from a store entry, or undefined (with a warning) when the key or value is malformed. */
  private leaseFromKeyValue(kv: KeyValue): Lease | undefined {
    const subnet = parseSubnetKey(kv.key);
    if (!subnet) {
      this.log.warn('ignoring a key under subnets/ that names no subnet', { key: kv.key });
      return undefined;
    }
    try {
      const attrs = parseLeaseAttrs(kv.value);
      const lease: Lease = { subnet, attrs };
      // Only get() knows the seconds left (a listing or a watch event says whether there is a TTL, not how long).
      if (kv.ttlSeconds !== undefined) lease.expiresAt = this.now() + kv.ttlSeconds * 1000;
      return lease;
    } catch (err) {
      this.log.warn('ignoring a malformed lease', { key: kv.key, error: errorText(err) });
      return undefined;
    }
  }

  private async scan(): Promise<{ entries: LeaseEntry[]; revision: number }> {
    const { kvs, revision } = await this.store.list(subnetsPrefix(this.prefix));
    const entries: LeaseEntry[] = [];
    for (const kv of kvs) {
      const lease = this.leaseFromKeyValue(kv);
      if (lease) entries.push({ kv, lease });
    }
    return { entries, revision };
  }
}
