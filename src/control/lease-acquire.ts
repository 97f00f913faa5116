// Acquiring this node's lease, in flannel's order (pkg/subnet/etcd/local_manager.go tryAcquireLease), with the node's
// name put ahead of its address:
//   1. the lease that names our node (VxtunNodeName), even when its PublicIP is an old address of ours: rewritten in
//      place with compare-and-swap, so a node whose address changed keeps its subnet and VTEP MAC (flannel#760)
//   2. a lease that names no node and carries our PublicIP (one flanneld or an older vxtun wrote for us)
//   3. the subnet in subnet.env, when inside the config and free
//   4. a uniformly random free subnet between SubnetMin and SubnetMax
// A key whose value does not parse still takes its subnet: it may be a node we cannot read, never a free subnet.
// Another node's lease is never taken: a node whose lease expired and was given to another gets a new subnet.
import { type Cidr, cidrContains, formatCidr, formatIPv4 } from '../wire/address';
import { type Lease, type LeaseAttrs, formatLeaseAttrs, subnetKey, subnetsOverlap, subnetsPrefix } from './lease';
import { type LeaseContext, type LeaseRecord, listLeaseRecords } from './lease-store';
import type { NetworkConfig } from './network-config';

/** No free subnet is left between SubnetMin and SubnetMax. */
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
  return (
    subnet.prefixLength === config.subnetLen &&
    subnet.address >= config.subnetMin &&
    subnet.address <= config.subnetMax &&
    cidrContains(config.network, subnet.address)
  );
}

export function expiry(ctx: LeaseContext, ttlSeconds: number | undefined): number | undefined {
  return ttlSeconds === undefined ? undefined : ctx.now() + ttlSeconds * 1000;
}

/**
 * Acquires this node's lease (order in the file comment). `attrs.nodeName` is our identity; without one, only rule 2
 * finds our lease. Throws NetworkFullError when no subnet is free, or an Error after RACE_RETRIES lost races.
 */
export async function acquireLease(ctx: LeaseContext, config: NetworkConfig, attrs: LeaseAttrs, previousSubnet?: Cidr): Promise<Lease> {
  for (let attempt = 1; attempt <= RACE_RETRIES; attempt++) {
    const { records } = await listLeaseRecords(ctx);
    const lease = await tryAcquire(ctx, config, attrs, previousSubnet, records);
    if (lease) return lease;
    ctx.log.debug('lost a race for a subnet; trying again', { attempt });
  }
  throw new Error(
    `could not acquire a subnet under ${subnetsPrefix(ctx.prefix)}: the store changed under each of ${RACE_RETRIES} attempts ` +
      '(other nodes acquiring at the same moment); try again',
  );
}

/** Our lease among the records: by node name first, then by PublicIP among leases that name no node. */
export function findOwnLease(records: LeaseRecord[], attrs: LeaseAttrs): { record: LeaseRecord; by: 'node name' | 'public IP' } | undefined {
  if (attrs.nodeName !== undefined) {
    const named = records.find((r) => r.lease?.attrs.nodeName === attrs.nodeName);
    if (named) return { record: named, by: 'node name' };
  }
  const byIp = records.find((r) => r.lease !== undefined && r.lease.attrs.nodeName === undefined && r.lease.attrs.publicIp === attrs.publicIp);
  return byIp && { record: byIp, by: 'public IP' };
}

async function tryAcquire(
  ctx: LeaseContext,
  config: NetworkConfig,
  attrs: LeaseAttrs,
  previousSubnet: Cidr | undefined,
  records: LeaseRecord[],
): Promise<Lease | undefined> {
  const publicIp = formatIPv4(attrs.publicIp);
  const own = findOwnLease(records, attrs);
  if (own) {
    const { record, by } = own;
    const old = record.lease!;
    const subnet = old.subnet;
    if (subnetFitsConfig(config, subnet) && record.key === subnetKey(ctx.prefix, subnet)) {
      // A key without TTL is a reservation: keep it one.
      const ttlSeconds = record.kv.ttlSeconds === undefined ? undefined : ctx.ttlSeconds;
      const written = await ctx.store.put(record.key, formatLeaseAttrs(attrs), { ttlSeconds, ifModRevision: record.kv.modRevision });
      if (!written) return undefined;
      if (old.attrs.publicIp !== attrs.publicIp) {
        ctx.log.info('our public IP changed: our lease now points at the new one', {
          subnet: formatCidr(subnet),
          node: attrs.nodeName,
          was: formatIPv4(old.attrs.publicIp),
          publicIp,
        });
      }
      ctx.log.info(`reusing the lease of our ${by}`, { subnet: formatCidr(subnet), node: attrs.nodeName, publicIp });
      return { subnet, attrs, expiresAt: expiry(ctx, ttlSeconds) };
    }
    ctx.log.warn(`the lease of our ${by} does not fit the network config; deleting it`, {
      subnet: formatCidr(subnet),
      publicIp,
      network: formatCidr(config.network),
      subnetLen: config.subnetLen,
    });
    await ctx.store.delete(record.key);
    records = records.filter((r) => r !== record);
  }

  // Every key naming a subnet takes it, whether or not its value parses.
  const taken = records.flatMap((r) => (r.subnet ? [r.subnet] : []));
  let subnet: Cidr | undefined;
  if (previousSubnet) {
    const previous = formatCidr(previousSubnet);
    if (!subnetFitsConfig(config, previousSubnet)) {
      ctx.log.warn('the previous subnet does not fit the network config; ignoring it', { subnet: previous });
    } else if (taken.some((t) => subnetsOverlap(t, previousSubnet))) {
      ctx.log.info('the previous subnet is taken now (by another lease, or a key whose value we cannot read)', { subnet: previous });
    } else {
      subnet = previousSubnet;
    }
  }
  subnet ??= pickFreeSubnet(ctx, config, taken);

  const key = subnetKey(ctx.prefix, subnet);
  const created = await ctx.store.put(key, formatLeaseAttrs(attrs), { ttlSeconds: ctx.ttlSeconds, ifAbsent: true });
  if (!created) return undefined;
  ctx.log.info(subnet === previousSubnet ? 'reusing the previous subnet' : 'acquired a new subnet', {
    subnet: formatCidr(subnet),
    node: attrs.nodeName,
    publicIp,
  });
  return { subnet, attrs, expiresAt: expiry(ctx, ctx.ttlSeconds) };
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
