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
import { type Cidr, cidrContains, cidrEquals, formatCidr, formatIPv4 } from '../wire/address';
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

type OwnedBy = 'node name' | 'public IP';

/** Why a lease is ours: it names our node, or it names none and carries our PublicIP (flannel's rule). */
function ownedBy(lease: Lease, attrs: LeaseAttrs): OwnedBy | undefined {
  if (attrs.nodeName !== undefined && lease.attrs.nodeName === attrs.nodeName) return 'node name';
  if (lease.attrs.nodeName === undefined && lease.attrs.publicIp === attrs.publicIp) return 'public IP';
  return undefined;
}

/**
 * Our lease among the records: the one at `previousSubnet` (subnet.env) when it is ours, else by node name, then by
 * PublicIP among leases that name no node. `alsoNamingUs` lists the other leases that carry our node name.
 */
export function findOwnLease(
  records: LeaseRecord[],
  attrs: LeaseAttrs,
  previousSubnet?: Cidr,
): { record: LeaseRecord; by: OwnedBy; alsoNamingUs: LeaseRecord[] } | undefined {
  const naming = (r: LeaseRecord): boolean => attrs.nodeName !== undefined && r.lease?.attrs.nodeName === attrs.nodeName;
  const found = ((): { record: LeaseRecord; by: OwnedBy } | undefined => {
    if (previousSubnet !== undefined) {
      const atPrevious = records.find((r) => r.lease !== undefined && cidrEquals(r.lease.subnet, previousSubnet));
      const by = atPrevious && ownedBy(atPrevious.lease!, attrs);
      if (by) return { record: atPrevious!, by };
    }
    const named = records.find(naming);
    if (named) return { record: named, by: 'node name' };
    const byIp = records.find((r) => r.lease !== undefined && ownedBy(r.lease, attrs) === 'public IP');
    return byIp && { record: byIp, by: 'public IP' };
  })();
  return found && { ...found, alsoNamingUs: records.filter((r) => r !== found.record && naming(r)) };
}

async function tryAcquire(
  ctx: LeaseContext,
  config: NetworkConfig,
  attrs: LeaseAttrs,
  previousSubnet: Cidr | undefined,
  records: LeaseRecord[],
): Promise<Lease | undefined> {
  const publicIp = formatIPv4(attrs.publicIp);
  const own = findOwnLease(records, attrs, previousSubnet);
  if (own) {
    const { record, by } = own;
    if (own.alsoNamingUs.length > 0) {
      ctx.log.warn('more than one lease names our node; keeping ours, the others are not ours (a stray or forged write?)', {
        subnet: formatCidr(record.lease!.subnet),
        node: attrs.nodeName,
        others: own.alsoNamingUs.map((r) => r.key).join(' '),
      });
    }
    const old = record.lease!;
    const subnet = old.subnet;
    if (subnetFitsConfig(config, subnet) && record.key === subnetKey(ctx.prefix, subnet)) {
      // A key without TTL is a reservation: keep it one.
      const ttlSeconds = record.kv.hasTtl ? ctx.ttlSeconds : undefined;
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
