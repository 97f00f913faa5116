// Acquiring this node's lease, in flannel's order (pkg/subnet/etcd/local_manager.go tryAcquireLease), with the node's
// name put ahead of its address:
//   0. the lease at the subnet in subnet.env, when it is ours (names our node, or names none and carries our PublicIP):
//      our pods hold addresses of that subnet, so another lease naming us (a stray or hostile write) never moves us
//   1. the lease that names our node (VxtunNodeName), even when its PublicIP is an old address of ours: rewritten in
//      place with compare-and-swap, so a node whose address changed keeps its subnet and VTEP MAC (flannel#760)
//   2. a lease that names no node and carries our PublicIP (one flanneld or an older vxtun wrote for us)
//   3. the subnet in subnet.env, when inside the config and free
//   4. a uniformly random free subnet between SubnetMin and SubnetMax
// A key whose value does not parse still takes its subnet: it may be a node we cannot read, never a free subnet.
// Another node's lease is never taken: a node whose lease expired and was given to another gets a new subnet.
// Dual stack (flannel local_manager.go tryAcquireLease, allocateSubnet): one lease, one key, holds both subnets, chosen
// under the same rules; a reused lease must fit both halves of the config (isSubnetConfigCompat and
// isIPv6SubnetConfigCompat). Where flannel deletes a lease that does not fit and starts over, we keep each half that
// still fits as the "previous" subnet of its family, so a network that becomes dual-stack keeps its pods' IPv4
// addresses and only adds an IPv6 subnet (the key changes: flannel's key names both subnets).
import { type Cidr, cidrContains, cidrEquals, formatCidr, formatIPv4 } from '../wire/address';
import { type Cidr6, type IPv6, cidr6Contains, cidr6Equals, formatCidr6, formatIPv6 } from '../wire/address6';
import {
  type Lease,
  type LeaseAttrs,
  NO_IPV4_SUBNET,
  formatLeaseAttrs,
  formatLeaseSubnets,
  hasIPv4Subnet,
  samePublicAddress,
  subnetKey,
  subnets6Overlap,
  subnetsOverlap,
  subnetsPrefix,
} from './lease';
import { type LeaseContext, type LeaseRecord, listLeaseRecords } from './lease-store';
import { type NetworkConfig, carriesIPv4 } from './network-config';

/** No free subnet is left between SubnetMin and SubnetMax (or IPv6SubnetMin and IPv6SubnetMax). */
export class NetworkFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkFullError';
  }
}

/** flannel retries a lost create race 10 times; each retry re-lists, so losing them all means heavy contention. */
export const RACE_RETRIES = 10;

/** flannel's isSubnetConfigCompat: the right length and between SubnetMin and SubnetMax. */
export function subnetFitsConfig(config: NetworkConfig, subnet: Cidr): boolean {
  if (!carriesIPv4(config)) return !hasIPv4Subnet(subnet);
  return (
    subnet.prefixLength === config.subnetLen &&
    subnet.address >= config.subnetMin &&
    subnet.address <= config.subnetMax &&
    cidrContains(config.network, subnet.address)
  );
}

/** flannel's isIPv6SubnetConfigCompat: none in an IPv4-only network; else IPv6SubnetLen long, between the bounds. */
export function subnet6FitsConfig(config: NetworkConfig, subnet6: Cidr6 | undefined): boolean {
  const v6 = config.ipv6;
  if (v6 === undefined) return subnet6 === undefined;
  return (
    subnet6 !== undefined &&
    subnet6.prefixLength === v6.subnetLen &&
    subnet6.address >= v6.subnetMin &&
    subnet6.address <= v6.subnetMax &&
    cidr6Contains(v6.network, subnet6.address)
  );
}

export function expiry(ctx: LeaseContext, ttlSeconds: number | undefined): number | undefined {
  return ttlSeconds === undefined ? undefined : ctx.now() + ttlSeconds * 1000;
}

/** The subnets this node held before (subnet.env's FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET). */
export interface PreviousSubnets {
  subnet?: Cidr;
  subnet6?: Cidr6;
}

/**
 * Acquires this node's lease (order in the file comment). `attrs.nodeName` is our identity; without one, only rule 2
 * finds our lease. Throws NetworkFullError when no subnet is free, or an Error after RACE_RETRIES lost races.
 */
export async function acquireLease(ctx: LeaseContext, config: NetworkConfig, attrs: LeaseAttrs, previousSubnet?: Cidr, previousSubnet6?: Cidr6): Promise<Lease> {
  for (let attempt = 1; attempt <= RACE_RETRIES; attempt++) {
    const { records } = await listLeaseRecords(ctx);
    const lease = await tryAcquire(ctx, config, attrs, { subnet: previousSubnet, subnet6: previousSubnet6 }, records);
    if (lease) return lease;
    ctx.log.debug('lost a race for a subnet; trying again', { attempt });
  }
  throw new Error(
    `could not acquire a subnet under ${subnetsPrefix(ctx.prefix)}: the store changed under each of ${RACE_RETRIES} attempts ` +
      '(other nodes acquiring at the same moment); try again',
  );
}

type OwnedBy = 'node name' | 'public IP';

/** Why a lease is ours: it names our node, or it names none and carries our PublicIP (flannel's rule). */
function ownedBy(lease: Lease, attrs: LeaseAttrs): OwnedBy | undefined {
  if (attrs.nodeName !== undefined && lease.attrs.nodeName === attrs.nodeName) return 'node name';
  if (lease.attrs.nodeName === undefined && samePublicAddress(lease.attrs, attrs)) return 'public IP';
  return undefined;
}

/** Whether the lease holds the previous subnet of either family. */
function atPrevious(lease: Lease, previous: PreviousSubnets): boolean {
  if (previous.subnet !== undefined && hasIPv4Subnet(previous.subnet) && cidrEquals(lease.subnet, previous.subnet)) return true;
  return previous.subnet6 !== undefined && lease.subnet6 !== undefined && cidr6Equals(lease.subnet6, previous.subnet6);
}

/**
 * Our lease among the records: the one at a previous subnet (subnet.env) when it is ours, else by node name, then by
 * PublicIP among leases that name no node. `alsoNamingUs` lists the other leases that carry our node name.
 */
export function findOwnLease(
  records: LeaseRecord[],
  attrs: LeaseAttrs,
  previousSubnet?: Cidr | PreviousSubnets,
): { record: LeaseRecord; by: OwnedBy; alsoNamingUs: LeaseRecord[] } | undefined {
  const previous: PreviousSubnets = previousSubnet === undefined ? {} : 'address' in previousSubnet ? { subnet: previousSubnet } : previousSubnet;
  const naming = (r: LeaseRecord): boolean => attrs.nodeName !== undefined && r.lease?.attrs.nodeName === attrs.nodeName;
  const found = ((): { record: LeaseRecord; by: OwnedBy } | undefined => {
    const there = records.find((r) => r.lease !== undefined && atPrevious(r.lease, previous));
    const by = there && ownedBy(there.lease!, attrs);
    if (by) return { record: there!, by };
    const named = records.find(naming);
    if (named) return { record: named, by: 'node name' };
    const byIp = records.find((r) => r.lease !== undefined && ownedBy(r.lease, attrs) === 'public IP');
    return byIp && { record: byIp, by: 'public IP' };
  })();
  return found && { ...found, alsoNamingUs: records.filter((r) => r !== found.record && naming(r)) };
}

function publicText(attrs: LeaseAttrs): string {
  if (attrs.publicIp === 0 && attrs.publicIpv6 !== undefined) return formatIPv6(attrs.publicIpv6);
  return attrs.publicIpv6 === undefined ? formatIPv4(attrs.publicIp) : `${formatIPv4(attrs.publicIp)} ${formatIPv6(attrs.publicIpv6)}`;
}

async function tryAcquire(
  ctx: LeaseContext,
  config: NetworkConfig,
  attrs: LeaseAttrs,
  previousIn: PreviousSubnets,
  records: LeaseRecord[],
): Promise<Lease | undefined> {
  const publicIp = publicText(attrs);
  const previous: PreviousSubnets = { ...previousIn };
  const own = findOwnLease(records, attrs, previous);
  if (own) {
    const { record, by } = own;
    if (own.alsoNamingUs.length > 0) {
      ctx.log.warn('more than one lease names our node; keeping ours, the others are not ours (a stray or forged write?)', {
        subnet: formatLeaseSubnets(record.lease!.subnet, record.lease!.subnet6),
        node: attrs.nodeName,
        others: own.alsoNamingUs.map((r) => r.key).join(' '),
      });
    }
    const old = record.lease!;
    const { subnet, subnet6 } = old;
    const fits4 = subnetFitsConfig(config, subnet);
    const fits6 = subnet6FitsConfig(config, subnet6);
    if (fits4 && fits6 && record.key === subnetKey(ctx.prefix, subnet, subnet6)) {
      // A key without TTL is a reservation: keep it one.
      const ttlSeconds = record.kv.hasTtl ? ctx.ttlSeconds : undefined;
      const written = await ctx.store.put(record.key, formatLeaseAttrs(attrs), { ttlSeconds, ifModRevision: record.kv.modRevision });
      if (!written) return undefined;
      if (!samePublicAddress(old.attrs, attrs) || old.attrs.publicIpv6 !== attrs.publicIpv6) {
        ctx.log.info('our public IP changed: our lease now points at the new one', {
          subnet: formatLeaseSubnets(subnet, subnet6),
          node: attrs.nodeName,
          was: publicText(old.attrs),
          publicIp,
        });
      }
      ctx.log.info(`reusing the lease of our ${by}`, { subnet: formatLeaseSubnets(subnet, subnet6), node: attrs.nodeName, publicIp });
      const lease: Lease = { subnet, attrs, expiresAt: expiry(ctx, ttlSeconds) };
      if (subnet6 !== undefined) lease.subnet6 = subnet6;
      return lease;
    }
    ctx.log.warn(`the lease of our ${by} does not fit the network config; deleting it`, {
      subnet: formatLeaseSubnets(subnet, subnet6),
      publicIp,
      network: carriesIPv4(config) ? formatCidr(config.network) : undefined,
      subnetLen: carriesIPv4(config) ? config.subnetLen : undefined,
      ipv6Network: config.ipv6 && formatCidr6(config.ipv6.network),
    });
    await ctx.store.delete(record.key);
    records = records.filter((r) => r !== record);
    // The half that still fits is ours to ask for again (a network that became dual-stack keeps its IPv4 subnet).
    if (fits4 && hasIPv4Subnet(subnet)) previous.subnet = subnet;
    if (fits6 && subnet6 !== undefined) previous.subnet6 = subnet6;
  }

  // Every key naming a subnet takes it, whether or not its value parses.
  const taken = records.flatMap((r) => (r.subnet && hasIPv4Subnet(r.subnet) ? [r.subnet] : []));
  const taken6 = records.flatMap((r) => (r.subnet6 ? [r.subnet6] : []));
  let subnet: Cidr = NO_IPV4_SUBNET;
  let reused = false;
  if (carriesIPv4(config)) {
    let chosen: Cidr | undefined;
    if (previous.subnet && hasIPv4Subnet(previous.subnet)) {
      const text = formatCidr(previous.subnet);
      if (!subnetFitsConfig(config, previous.subnet)) {
        ctx.log.warn('the previous subnet does not fit the network config; ignoring it', { subnet: text });
      } else if (taken.some((t) => subnetsOverlap(t, previous.subnet!))) {
        ctx.log.info('the previous subnet is taken now (by another lease, or a key whose value we cannot read)', { subnet: text });
      } else {
        chosen = previous.subnet;
        reused = true;
      }
    }
    subnet = chosen ?? pickFreeSubnet(ctx, config, taken);
  }
  let subnet6: Cidr6 | undefined;
  if (config.ipv6 !== undefined) {
    if (previous.subnet6) {
      const text = formatCidr6(previous.subnet6);
      if (!subnet6FitsConfig(config, previous.subnet6)) {
        ctx.log.warn('the previous IPv6 subnet does not fit the network config; ignoring it', { subnet: text });
      } else if (taken6.some((t) => subnets6Overlap(t, previous.subnet6!))) {
        ctx.log.info('the previous IPv6 subnet is taken now (by another lease, or a key whose value we cannot read)', { subnet: text });
      } else {
        subnet6 = previous.subnet6;
        reused = true;
      }
    }
    subnet6 ??= pickFreeSubnet6(ctx, config, taken6);
  }

  const key = subnetKey(ctx.prefix, subnet, subnet6);
  const created = await ctx.store.put(key, formatLeaseAttrs(attrs), { ttlSeconds: ctx.ttlSeconds, ifAbsent: true });
  if (!created) return undefined;
  ctx.log.info(reused ? 'reusing the previous subnet' : 'acquired a new subnet', {
    subnet: formatLeaseSubnets(subnet, subnet6),
    node: attrs.nodeName,
    publicIp,
  });
  const lease: Lease = { subnet, attrs, expiresAt: expiry(ctx, ctx.ttlSeconds) };
  if (subnet6 !== undefined) lease.subnet6 = subnet6;
  return lease;
}

/** A uniformly random free subnet between SubnetMin and SubnetMax; throws NetworkFullError when none is. */
function pickFreeSubnet(ctx: LeaseContext, config: NetworkConfig, taken: Cidr[]): Cidr {
  const size = 2 ** (32 - config.subnetLen);
  const sameLength = new Set<number>();
  const otherLengths: Cidr[] = [];
  for (const subnet of taken) {
    if (subnet.prefixLength === config.subnetLen) sameLength.add(subnet.address);
    else otherLengths.push(subnet);
  }
  const isFree = (address: number): boolean =>
    !sameLength.has(address) &&
    (otherLengths.length === 0 || !otherLengths.some((o) => subnetsOverlap(o, { address, prefixLength: config.subnetLen })));

  let free = 0;
  for (let a = config.subnetMin; a <= config.subnetMax; a += size) if (isFree(a)) free++;
  if (free === 0) {
    throw new NetworkFullError(
      `network ${formatCidr(config.network)} has no free /${config.subnetLen} between ${formatIPv4(config.subnetMin)} and ` +
        `${formatIPv4(config.subnetMax)} (${taken.length} leases); widen Network or remove stale leases`,
    );
  }
  let pick = Math.min(free - 1, Math.floor(ctx.random() * free));
  for (let a = config.subnetMin; ; a += size) {
    if (!isFree(a)) continue;
    if (pick === 0) return { address: a, prefixLength: config.subnetLen };
    pick--;
  }
}

/** Ranges up to this many IPv6 subnets are counted out (exactly uniform); larger ones are sampled. */
const ENUMERATE_LIMIT6 = 1n << 16n;
/** Random draws in a large IPv6 range before falling back to a scan from a random start. */
const SAMPLES6 = 256;

/** A random bigint in [0, n): four 32-bit draws of ctx.random, 128 bits, reduced modulo n (bias below 2^-64 for n <= 2^64). */
function randomBelow(ctx: LeaseContext, n: bigint): bigint {
  let r = 0n;
  for (let i = 0; i < 4; i++) r = (r << 32n) | BigInt(Math.min(0xffffffff, Math.floor(ctx.random() * 2 ** 32)));
  return r % n;
}

/**
 * A random free IPv6 subnet between IPv6SubnetMin and IPv6SubnetMax: uniform among the free ones (counted out when the
 * range holds at most 2^16 subnets, by rejection sampling above that: a /48 of /64s holds 65,536, a /32 four billion);
 * throws NetworkFullError when none is. flannel draws from the first 100 free ones; a uniform draw over the whole
 * range keeps two nodes starting together from colliding as often.
 */
function pickFreeSubnet6(ctx: LeaseContext, config: NetworkConfig, taken: Cidr6[]): Cidr6 {
  const v6 = config.ipv6!;
  const prefixLength = v6.subnetLen;
  const size = 1n << BigInt(128 - prefixLength);
  const count = (v6.subnetMax - v6.subnetMin) / size + 1n;
  const sameLength = new Set<bigint>();
  const otherLengths: Cidr6[] = [];
  for (const subnet of taken) {
    if (subnet.prefixLength === prefixLength) sameLength.add(subnet.address);
    else otherLengths.push(subnet);
  }
  const isFree = (address: IPv6): boolean =>
    !sameLength.has(address) && (otherLengths.length === 0 || !otherLengths.some((o) => subnets6Overlap(o, { address, prefixLength })));
  const full = (): never => {
    throw new NetworkFullError(
      `IPv6 network ${formatCidr6(v6.network)} has no free /${prefixLength} between ${formatIPv6(v6.subnetMin)} and ` +
        `${formatIPv6(v6.subnetMax)} (${taken.length} leases); widen IPv6Network or remove stale leases`,
    );
  };
  if (count <= ENUMERATE_LIMIT6) {
    const free: IPv6[] = [];
    for (let a = v6.subnetMin; a <= v6.subnetMax; a += size) if (isFree(a)) free.push(a);
    if (free.length === 0) full();
    return { address: free[Math.min(free.length - 1, Math.floor(ctx.random() * free.length))], prefixLength };
  }
  for (let i = 0; i < SAMPLES6; i++) {
    const address = v6.subnetMin + randomBelow(ctx, count) * size;
    if (isFree(address)) return { address, prefixLength };
  }
  // Hundreds of misses in a range this large means the leases crowd it; walk from a random start instead.
  const start = randomBelow(ctx, count);
  const limit = BigInt(taken.length) + 1n < count ? BigInt(taken.length) + 1n : count;
  for (let i = 0n; i < limit; i++) {
    const address = v6.subnetMin + ((start + i) % count) * size;
    if (isFree(address)) return { address, prefixLength };
  }
  return full();
}
