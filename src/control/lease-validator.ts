// The gate between the store and the tables. Every key under <prefix>/subnets/ is checked before its lease may reach
// the route, neighbor and FDB tables; a lease that fails is refused, logged once per key and reason, and listed in
// `vxtun status`, and it never shadows, overwrites or removes the entries of an accepted lease.
//
// Why: the tables are keyed by what the leases say (the neighbor table by the subnet's .0, the FDB by the VTEP MAC),
// so one stray lease (a /25 inside another node's /24, a copied VTEP MAC) would overwrite another node's entries and,
// when it expired, take them away. flannel relies on its own writers for this; a shared store needs a gate.
//
// Checks, in order (the first that fails is the reason):
//   1. key and value parse (lease.ts; flannel's subnet key pattern, in its canonical spelling, and LeaseAttrs)
//   2. BackendType is ours (flannel: "Leases of another BackendType are ignored by a backend")
//   3. the PublicIP can be a node's underlay address (not loopback, multicast, 0.0.0.0/8 or 240.0.0.0/4: VXLAN to them
//      loops back into this host, goes out as multicast or nowhere; special-addresses.ts) and is not this node's own
//      (packets for that subnet would come back to us). Two other leases naming one PublicIP are left alone: harmless.
//   4. vxlan: the VNI, when the lease names one, is ours (our check: flannel does not compare VNIs, and flannel
//      before the VNI field wrote only {"VtepMAC":...}, so an absent VNI passes); a VtepMAC is present
//   5. the subnet is inside Network
//   6. it overlaps neither our subnet nor an accepted lease
//   7. its length is SubnetLen (flannel's isSubnetConfigCompat; flannel only ever writes SubnetLen leases)
//   8. vxlan: its VTEP MAC is neither ours nor an accepted lease's
// A conflict between two leases (6, 8) goes to the one accepted first; when both are new (a snapshot), to the lease of
// the right length, then to the older key (lower create revision), then to the lower key. Refused leases are checked
// again whenever an accepted lease leaves or changes, so the loser of a conflict is accepted once the winner is gone.
// Without checks (no config given) only rule 1 applies: what parses passes, as before the gate existed.
import { type Cidr, type IPv4, type Mac, cidrContains, cidrEquals, formatCidr, formatIPv4, formatMac, prefixMask } from '../wire/address';
import { type Lease, leaseAttrsEqual, subnetsOverlap } from './lease';
import type { LeaseRecord } from './lease-store';
import type { Logger } from './log';
import type { NetworkConfig } from './network-config';
import { unusableUnderlayAddress } from './special-addresses';

export interface LeaseEvent {
  /** 'added' for a subnet already known replaces it (a node restarted with a new VTEP MAC, or renewed). */
  type: 'added' | 'removed';
  lease: Lease;
}

/** What a lease is checked against: the network config this agent runs with and what our own lease holds. */
export interface LeaseChecks {
  config: NetworkConfig;
  /** Our lease's subnet: leases naming exactly it pass through (consumers skip them); overlapping ones are refused. */
  ownSubnet: Cidr;
  /** Our node name (VxtunNodeName): another lease naming it is not ours and no other node's either; refused. */
  ownNodeName?: string;
  /** Our VTEP MAC (vxlan): another lease carrying it is refused. */
  ownVtepMac?: Mac;
  /** Our underlay address: another lease naming it is refused. */
  ownPublicIp?: IPv4;
}

export interface RefusedLease {
  /** The store key, e.g. /coreos.com/network/subnets/10.17.2.0-25. */
  key: string;
  reason: string;
}

function byCidr(subnet: Cidr): string {
  return formatCidr(subnet);
}

export class LeaseValidator {
  /** Every key we have seen, parsed or not. */
  private readonly records = new Map<string, LeaseRecord>();
  private readonly accepted = new Map<string, Lease>();
  /** Accepted leases by subnet ("10.17.2.0/24") and by VTEP MAC, to find conflicts in O(1). */
  private readonly subnets = new Map<string, string>();
  private readonly macs = new Map<Mac, string>();
  private readonly refusals = new Map<string, string>();
  /** The reason last logged per key: a renewal or resync of a refused lease says nothing new. */
  private readonly logged = new Map<string, string>();

  constructor(
    private readonly log: Logger,
    private readonly checks?: LeaseChecks,
  ) {}

  /** Refused keys and why, sorted by key. */
  get refused(): RefusedLease[] {
    return [...this.refusals].map(([key, reason]) => ({ key, reason })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get leases(): Lease[] {
    return [...this.accepted.values()];
  }

  /** Replaces everything with this listing; returns the accepted leases. Leases accepted before keep precedence. */
  snapshot(records: LeaseRecord[]): Lease[] {
    const before = new Set(this.accepted.keys());
    this.records.clear();
    this.accepted.clear();
    this.subnets.clear();
    this.macs.clear();
    this.refusals.clear();
    for (const record of records) this.records.set(record.key, record);
    for (const key of [...this.logged.keys()]) if (!this.records.has(key)) this.logged.delete(key);
    const ordered = [...records].sort((a, b) => Number(!before.has(a.key)) - Number(!before.has(b.key)) || this.compare(a, b));
    for (const record of ordered) this.evaluate(record, []);
    return this.leases;
  }

  /** A key was written: returns the changes to the accepted set, removals of a lease before what they make room for. */
  put(record: LeaseRecord): LeaseEvent[] {
    const events: LeaseEvent[] = [];
    this.records.set(record.key, record);
    const previous = this.accepted.get(record.key);
    if (previous !== undefined) this.unaccept(record.key, previous);
    this.refusals.delete(record.key);
    const lease = this.evaluate(record, events);
    if (previous !== undefined && lease === undefined) events.unshift({ type: 'removed', lease: previous });
    // A lease that left or changed may have held what a refused one wanted.
    if (previous !== undefined && (lease === undefined || !leaseAttrsEqual(previous.attrs, lease.attrs))) this.reevaluateRefused(events);
    return events;
  }

  /** A key was deleted (or expired). */
  delete(key: string): LeaseEvent[] {
    const events: LeaseEvent[] = [];
    this.records.delete(key);
    this.refusals.delete(key);
    this.logged.delete(key);
    const previous = this.accepted.get(key);
    if (previous !== undefined) {
      this.unaccept(key, previous);
      events.push({ type: 'removed', lease: previous });
      this.reevaluateRefused(events);
    }
    return events;
  }

  /** The reason this lease may not reach the tables now, or undefined when it may. */
  reasonToRefuse(record: LeaseRecord): string | undefined {
    if (record.lease === undefined) return record.error ?? 'not a lease';
    const checks = this.checks;
    if (checks === undefined) return undefined;
    const { subnet, attrs } = record.lease;
    if (cidrEquals(subnet, checks.ownSubnet)) return undefined;
    // A second lease carrying our node name is a stray or forged write: acquire kept the other one (lease-acquire.ts).
    if (checks.ownNodeName !== undefined && attrs.nodeName === checks.ownNodeName) return `names this node (${checks.ownNodeName}), whose lease is ${formatCidr(checks.ownSubnet)}`;
    const backend = checks.config.backend;
    if (attrs.backendType !== backend.type) return `backend type ${JSON.stringify(attrs.backendType)} is not ours (${JSON.stringify(backend.type)})`;
    const unusable = unusableUnderlayAddress(attrs.publicIp);
    if (unusable !== undefined) return `PublicIP ${unusable}, not a node's underlay address`;
    if (attrs.publicIp === checks.ownPublicIp) return `PublicIP ${formatIPv4(attrs.publicIp)} names this node's own address`;
    const mac = attrs.backendData?.vtepMac;
    if (backend.type === 'vxlan') {
      const vni = attrs.backendData?.vni;
      if (vni !== undefined && vni !== backend.vni) return `VNI ${vni} is not ours (${backend.vni})`;
      if (mac === undefined) return 'a vxlan lease without a VtepMAC';
    }
    const network = checks.config.network;
    if (!cidrContains(network, subnet.address)) return `${formatCidr(subnet)} is outside the network ${formatCidr(network)}`;
    if (subnetsOverlap(subnet, checks.ownSubnet)) return `overlaps our subnet ${formatCidr(checks.ownSubnet)}`;
    const overlapping = this.overlappingAccepted(subnet);
    if (overlapping !== undefined) return `overlaps ${formatCidr(overlapping.subnet)} of ${formatIPv4(overlapping.attrs.publicIp)}`;
    const subnetLen = checks.config.subnetLen;
    if (subnet.prefixLength !== subnetLen) return `a /${subnet.prefixLength}, but the network's SubnetLen is ${subnetLen}`;
    if (backend.type === 'vxlan' && mac !== undefined) {
      if (mac === checks.ownVtepMac) return `VTEP MAC ${formatMac(mac)} is ours`;
      const holder = this.macs.get(mac);
      if (holder !== undefined) {
        const other = this.accepted.get(holder)!;
        return `VTEP MAC ${formatMac(mac)} is already used by ${formatCidr(other.subnet)} of ${formatIPv4(other.attrs.publicIp)}`;
      }
    }
    return undefined;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  /** The right length first (a stray /25 never outranks the /24 it lies in), then older keys (create revision), then by key. */
  private compare(a: LeaseRecord, b: LeaseRecord): number {
    const subnetLen = this.checks?.config.subnetLen;
    const fits = (r: LeaseRecord): number => (r.subnet?.prefixLength === subnetLen ? 0 : 1);
    return fits(a) - fits(b) || a.revision - b.revision || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  }

  /** Accepts or refuses one record, appending an 'added' event when accepted; returns the lease when accepted. */
  private evaluate(record: LeaseRecord, events: LeaseEvent[]): Lease | undefined {
    const reason = this.reasonToRefuse(record);
    if (reason !== undefined) {
      this.refusals.set(record.key, reason);
      if (this.logged.get(record.key) !== reason) {
        this.logged.set(record.key, reason);
        this.log.warn('refusing a lease', { key: record.key, reason });
      }
      return undefined;
    }
    const lease = record.lease!;
    if (this.logged.delete(record.key)) this.log.info('accepting a lease refused before', { key: record.key });
    this.accepted.set(record.key, lease);
    if (this.checks !== undefined && !cidrEquals(lease.subnet, this.checks.ownSubnet)) {
      this.subnets.set(byCidr(lease.subnet), record.key);
      const mac = lease.attrs.backendData?.vtepMac;
      if (mac !== undefined && this.checks.config.backend.type === 'vxlan') this.macs.set(mac, record.key);
    }
    events.push({ type: 'added', lease });
    return lease;
  }

  private unaccept(key: string, lease: Lease): void {
    this.accepted.delete(key);
    if (this.subnets.get(byCidr(lease.subnet)) === key) this.subnets.delete(byCidr(lease.subnet));
    const mac = lease.attrs.backendData?.vtepMac;
    if (mac !== undefined && this.macs.get(mac) === key) this.macs.delete(mac);
  }

  private reevaluateRefused(events: LeaseEvent[]): void {
    if (this.refusals.size === 0) return;
    const waiting = [...this.refusals.keys()].map((key) => this.records.get(key)!).sort((a, b) => this.compare(a, b));
    for (const record of waiting) {
      this.refusals.delete(record.key);
      this.evaluate(record, events);
    }
  }

  /**
   * An accepted lease sharing addresses with `subnet`. Accepted leases (other than ours) are all SubnetLen long, so a
   * longer or equal candidate has one SubnetLen-aligned container to look up, and a shorter one covers a range of
   * them: enumerated when that is cheaper than scanning the accepted leases.
   */
  private overlappingAccepted(subnet: Cidr): Lease | undefined {
    const subnetLen = this.checks!.config.subnetLen;
    const lookup = (address: number): Lease | undefined => {
      const key = this.subnets.get(byCidr({ address, prefixLength: subnetLen }));
      return key === undefined ? undefined : this.accepted.get(key);
    };
    if (subnet.prefixLength >= subnetLen) return lookup((subnet.address & prefixMask(subnetLen)) >>> 0);
    const count = 2 ** (subnetLen - subnet.prefixLength);
    if (count <= this.subnets.size) {
      const step = 2 ** (32 - subnetLen);
      for (let i = 0; i < count; i++) {
        const found = lookup(subnet.address + i * step);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    for (const key of this.subnets.values()) {
      const lease = this.accepted.get(key)!;
      if (subnetsOverlap(lease.subnet, subnet)) return lease;
    }
    return undefined;
  }
}
