// The lease manager: flannel's pkg/subnet Manager over our Store seam, as one object for callers. Each job lives in
// its own file: network-config-store.ts (read, write, watch the config), lease-acquire.ts (flannel's acquire order),
// lease-keeper.ts (renew and keep), lease-watch.ts (watch, through lease-validator.ts), lease-store.ts (shared
// settings, listing). This class only holds the settings and hands them to those.
import type { Cidr } from '../wire/address';
import type { Cidr6 } from '../wire/address6';
import type { Store } from '../store/store';
import { DEFAULT_PREFIX, type Lease, type LeaseAttrs } from './lease';
import { acquireLease } from './lease-acquire';
import { type KeepHandlers, type LeaseKeeper, keepLease, renewLease } from './lease-keeper';
import { type LeaseContext, type Timers, listLeaseRecords, realTimers } from './lease-store';
import { type LeaseWatch, type LeaseWatchHandlers, type LeaseWatchOptions, watchLeases } from './lease-watch';
import { type Logger, nullLogger } from './log';
import type { NetworkConfig } from './network-config';
import { type ConfigWatch, readNetworkConfig, watchNetworkConfig, writeNetworkConfig } from './network-config-store';

export { subnetsOverlap } from './lease';
export { NetworkFullError, subnet6FitsConfig, subnetFitsConfig } from './lease-acquire';
export { LeaseLostError, type KeepHandlers, type LeaseKeeper } from './lease-keeper';
export type { LeaseRecord, Timers } from './lease-store';
export type { LeaseEvent, LeaseChecks, RefusedLease } from './lease-validator';
export type { LeaseWatch, LeaseWatchHandlers, LeaseWatchOptions } from './lease-watch';
export type { ConfigMismatch, ConfigWatch } from './network-config-store';

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

export class LeaseManager {
  readonly store: Store;
  readonly prefix: string;
  readonly ttlSeconds: number;
  private readonly config?: NetworkConfig;
  private readonly ctx: LeaseContext;

  constructor(options: LeaseManagerOptions) {
    this.store = options.store;
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '');
    this.config = options.config;
    this.ttlSeconds = options.ttlSeconds ?? 86400;
    if (!(this.ttlSeconds > 0)) throw new Error(`lease ttlSeconds must be positive, got ${this.ttlSeconds}`);
    this.ctx = {
      store: this.store,
      prefix: this.prefix,
      ttlSeconds: this.ttlSeconds,
      renewMarginSeconds: options.renewMarginSeconds ?? 3600,
      retrySeconds: options.retrySeconds ?? 60,
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
      timers: options.timers ?? realTimers,
      log: options.log ?? nullLogger,
    };
  }

  readNetworkConfig(): Promise<NetworkConfig> {
    return readNetworkConfig(this.store, this.prefix);
  }

  /** See network-config-store.ts writeNetworkConfig. */
  writeNetworkConfig(json: string, options: { replace?: boolean } = {}): Promise<void> {
    return writeNetworkConfig(this.store, this.prefix, json, options);
  }

  /** Follows <prefix>/config and reports when it stops matching `running` (network-config-store.ts). */
  watchNetworkConfig(running: NetworkConfig): Promise<ConfigWatch> {
    return watchNetworkConfig(this.store, this.prefix, running, this.ctx.log);
  }

  /** The leases that parse, and the store revision of the listing. */
  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    const { records, revision } = await listLeaseRecords(this.ctx);
    return { leases: records.flatMap((r) => (r.lease ? [r.lease] : [])), revision };
  }

  /** See lease-watch.ts; pass `checks` to keep invalid and conflicting leases from the handlers. */
  watchLeases(handlers: LeaseWatchHandlers, options: LeaseWatchOptions = {}): Promise<LeaseWatch> {
    return watchLeases(this.ctx, handlers, options);
  }

  /** See lease-acquire.ts for the order: our node name, our PublicIP, `previousSubnet` (subnet.env), a random one. */
  async acquire(attrs: LeaseAttrs, options: { previousSubnet?: Cidr; previousSubnet6?: Cidr6 } = {}): Promise<Lease> {
    const config = this.config ?? (await this.readNetworkConfig());
    return acquireLease(this.ctx, config, attrs, options.previousSubnet, options.previousSubnet6);
  }

  renew(lease: Lease): Promise<Lease> {
    return renewLease(this.ctx, lease);
  }

  keep(lease: Lease, handlers: KeepHandlers): LeaseKeeper {
    return keepLease(this.ctx, lease, handlers);
  }
}
