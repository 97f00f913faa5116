// Leases as the store holds them: the settings the lease jobs share (store, prefix, TTL, clock, timers, log), and the
// reading of <prefix>/subnets/ into records that keep what could not be parsed (a key naming no subnet, a value that
// is not a lease), because such a key still takes its subnet and still deserves a word in `vxtun status`.
import type { KeyValue, Store } from '../store/store';
import type { Cidr } from '../wire/address';
import type { Cidr6 } from '../wire/address6';
import { Lease, formatLeaseSubnets, hasIPv4Subnet, parseLeaseAttrs, parseSubnetKeys, subnetKey, subnetsPrefix } from './lease';
import type { Logger } from './log';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** What the lease jobs (watch, acquire, keep) share; built once by LeaseManager. */
export interface LeaseContext {
  store: Store;
  /** Without a trailing slash, e.g. "/coreos.com/network". */
  prefix: string;
  /** Lease TTL in seconds; flannel's is 24 h. */
  ttlSeconds: number;
  /** Renew this many seconds before expiry (flannel: 1 h); at most half the TTL. */
  renewMarginSeconds: number;
  /** After a failed renewal or re-list, try again this many seconds later (flannel: 1 min). */
  retrySeconds: number;
  random: () => number;
  /** Milliseconds since the epoch. */
  now: () => number;
  timers: Timers;
  log: Logger;
}

/** One key under <prefix>/subnets/: a lease, or the reason it is not one. */
export interface LeaseRecord {
  key: string;
  /**
   * The key's create revision: orders conflicting leases, older first. Stable: a renewal or restart rewrites the key
   * (a new modRevision) but keeps its creation, so precedence never flips to a younger duplicate.
   */
  revision: number;
  /** The subnet the key names; absent when it names none or is not its canonical key (see recordFromKeyValue). */
  subnet?: Cidr;
  /** The IPv6 subnet a dual-stack or IPv6-only key names ("&fd00:10:244:1::-64"); only beside `subnet`. */
  subnet6?: Cidr6;
  /** Present when key and value both parse. */
  lease?: Lease;
  /** Why this is not a lease (unparseable key or value); present exactly when `lease` is absent. */
  error?: string;
  /** The store entry, for compare-and-swap and TTL decisions. */
  kv: KeyValue;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Whether `key` is flannel's own spelling of the subnets' key: exactly subnetKey(prefix, subnet, subnet6), directly
 * under <prefix>/subnets/, the IPv6 part in RFC 5952 text as Go's net.IP prints it. parseSubnetKeys alone also reads
 * ".../subnets/dup/10.17.13.0-24", "010.017.013.000-24" and "...&FD00:0::-64": such duplicates would compete with the
 * real key.
 */
export function isCanonicalSubnetKey(key: string, prefix: string, subnet: Cidr, subnet6?: Cidr6): boolean {
  return key === subnetKey(prefix, subnet, subnet6);
}


/**
 * Reads one store entry; never throws (what does not parse is described in `error`). A key that names a subnet in
 * another spelling than the canonical one is not a lease and takes no subnet: it never competes with the real key.
 */
export function recordFromKeyValue(kv: KeyValue, now: number, prefix: string): LeaseRecord {
  const parsed = parseSubnetKeys(kv.key);
  // "0.0.0.0-0" alone would take every IPv4 subnet; flannel only writes it beside an IPv6 subnet (IPv6-only leases).
  if (!parsed || (!hasIPv4Subnet(parsed.subnet) && parsed.subnet6 === undefined)) {
    const error = 'the key names no subnet (expected <prefix>/subnets/A.B.C.D-LEN, optionally followed by &IPV6-LEN)';
    return { key: kv.key, revision: kv.createRevision, kv, error };
  }
  const { subnet, subnet6 } = parsed;
  if (!isCanonicalSubnetKey(kv.key, prefix, subnet, subnet6)) {
    const error = `not the canonical key of ${formatLeaseSubnets(subnet, subnet6)} (expected ${subnetKey(prefix, subnet, subnet6)})`;
    return { key: kv.key, revision: kv.createRevision, kv, error };
  }
  const record: LeaseRecord = { key: kv.key, revision: kv.createRevision, subnet, kv };
  if (subnet6 !== undefined) record.subnet6 = subnet6;
  try {
    const attrs = parseLeaseAttrs(kv.value);
    const lease: Lease = { subnet, attrs };
    if (subnet6 !== undefined) lease.subnet6 = subnet6;
    // Only get() knows the seconds left (a listing or a watch event says whether there is a TTL, not how long).
    if (kv.ttlSeconds !== undefined) lease.expiresAt = now + kv.ttlSeconds * 1000;
    record.lease = lease;
    return record;
  } catch (err) {
    record.error = errorText(err);
    return record;
  }
}

/** Every key under <prefix>/subnets/ as a record, and the store revision the listing reflects. */
export async function listLeaseRecords(ctx: LeaseContext): Promise<{ records: LeaseRecord[]; revision: number }> {
  const { kvs, revision } = await ctx.store.list(subnetsPrefix(ctx.prefix));
  const now = ctx.now();
  return { records: kvs.map((kv) => recordFromKeyValue(kv, now, ctx.prefix)), revision };
}
