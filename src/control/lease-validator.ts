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
//
// IPv6 (issue 12). In a network that carries IPv6, a lease's IPv6 half is checked by the same rules after its IPv4
// half: the PublicIPv6 can be an underlay address (not ::, loopback, multicast, link-local or IPv4-mapped:
// special-addresses.ts) and is not ours; vxlan: BackendV6Data's VNI is ours and it has a VtepMAC; the IPv6 subnet is
// inside IPv6Network, overlaps neither ours nor an accepted lease's, and is IPv6SubnetLen long; the v6 VTEP MAC is
// neither ours (v4 or v6) nor any accepted lease's. A lease with no IPv6 subnet in a dual-stack network still serves
// IPv4 (flannel nodes that run single-stack); in an IPv6-only network it is refused, and the IPv4 half of a lease is
// not looked at (flannel writes 0.0.0.0-0 and PublicIP 0.0.0.0 there). In an IPv4-only network the IPv6 half of a
// dual-stack lease is ignored, as flannel's IPv4-only nodes ignore it.
import { type Cidr, type IPv4, type Mac, cidrContains, cidrEquals, formatCidr, formatIPv4, formatMac, prefixMask } from '../wire/address';
import { type Cidr6, type IPv6, cidr6Contains, cidr6Equals, formatCidr6, formatIPv6, prefixMask6 } from '../wire/address6';
import { type Lease, formatLeaseSubnets, leaseAttrsEqual, subnets6Overlap, subnetsOverlap } from './lease';
import type { LeaseRecord } from './lease-store';
import type { Logger } from './log';
import { type NetworkConfig, carriesIPv4 } from './network-config';
import { unusableUnderlayAddress, unusableUnderlayAddress6 } from './special-addresses';

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
  /** Our lease's IPv6 subnet (dual-stack or IPv6-only network). */
  ownSubnet6?: Cidr6;
  /** Our IPv6 VTEP MAC (vxlan, BackendV6Data.VtepMAC). */
  ownVtepMac6?: Mac;
  /** Our IPv6 underlay address (--public-ipv6). */
  ownPublicIpv6?: IPv6;
}

/** Whether a lease names exactly our subnets (both halves): our own lease, which consumers skip. */
export function isOwnLease(lease: Lease, ownSubnet: Cidr, ownSubnet6?: Cidr6): boolean {
  if (!cidrEquals(lease.subnet, ownSubnet)) return false;
  if (lease.subnet6 === undefined || ownSubnet6 === undefined) return lease.subnet6 === ownSubnet6;
  return cidr6Equals(lease.subnet6, ownSubnet6);
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
  /** Accepted leases by IPv6 subnet ("fd00:10:244:1::/64"). */
  private readonly subnets6 = new Map<string, string>();
  /** Accepted leases by VTEP MAC, IPv4 and IPv6 VTEPs alike: a MAC names one VTEP. */
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
    this.subnets6.clear();
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
    if (isOwnLease(record.lease, checks.ownSubnet, checks.ownSubnet6)) return undefined;
    const own = formatLeaseSubnets(checks.ownSubnet, checks.ownSubnet6);
    // A second lease carrying our node name is a stray or forged write: acquire kept the other one (lease-acquire.ts).
    if (checks.ownNodeName !== undefined && attrs.nodeName === checks.ownNodeName) return `names this node (${checks.ownNodeName}), whose lease is ${own}`;
    const backend = checks.config.backend;
    if (attrs.backendType !== backend.type) return `backend type ${JSON.stringify(attrs.backendType)} is not ours (${JSON.stringify(backend.type)})`;
    const ipv4 = carriesIPv4(checks.config);
    if (ipv4) {
      const reason = this.reasonToRefuse4(record.lease, checks);
      if (reason !== undefined) return reason;
    }
    if (checks.config.ipv6 !== undefined && record.lease.subnet6 !== undefined) return this.reasonToRefuse6(record.lease, checks);
    if (!ipv4) return 'no IPv6 subnet, in an IPv6-only network';
    return undefined;
  }

  private reasonToRefuse4(lease: Lease, checks: LeaseChecks): string | undefined {
    const { subnet, attrs } = lease;
    const backend = checks.config.backend;
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
    if (backend.type === 'vxlan' && mac !== undefined) return this.macReason(mac, checks, 'VTEP MAC');
    return undefined;
  }

  private reasonToRefuse6(lease: Lease, checks: LeaseChecks): string | undefined {
    const { attrs } = lease;
    const subnet6 = lease.subnet6!;
    const v6 = checks.config.ipv6!;
    const backend = checks.config.backend;
    const publicIpv6 = attrs.publicIpv6;
    if (publicIpv6 !== undefined) {
      const unusable = unusableUnderlayAddress6(publicIpv6);
      if (unusable !== undefined) return `PublicIPv6 ${unusable}, not a node's underlay address`;
      if (publicIpv6 === checks.ownPublicIpv6) return `PublicIPv6 ${formatIPv6(publicIpv6)} names this node's own address`;
    } else if (!carriesIPv4(checks.config) || backend.type === 'host-gw') {
      // IPv6-only: nothing else says where the node is. host-gw: flannel routes IPv6 via the PublicIPv6.
      return `an IPv6 subnet (${formatCidr6(subnet6)}) without a PublicIPv6`;
    }
    const mac = attrs.backendV6Data?.vtepMac;
    if (backend.type === 'vxlan') {
      const vni = attrs.backendV6Data?.vni;
      if (vni !== undefined && vni !== backend.vni) return `BackendV6Data VNI ${vni} is not ours (${backend.vni})`;
      if (mac === undefined) return `an IPv6 subnet (${formatCidr6(subnet6)}) without a BackendV6Data VtepMAC`;
    }
    if (!cidr6Contains(v6.network, subnet6.address)) return `${formatCidr6(subnet6)} is outside the IPv6 network ${formatCidr6(v6.network)}`;
    if (checks.ownSubnet6 !== undefined && subnets6Overlap(subnet6, checks.ownSubnet6)) return `overlaps our IPv6 subnet ${formatCidr6(checks.ownSubnet6)}`;
    const overlapping = this.overlappingAccepted6(subnet6);
    if (overlapping !== undefined) return `overlaps ${formatCidr6(overlapping.subnet6!)} of ${describeHolder(overlapping)}`;
    if (subnet6.prefixLength !== v6.subnetLen) return `an IPv6 /${subnet6.prefixLength}, but the network's IPv6SubnetLen is ${v6.subnetLen}`;
    if (backend.type === 'vxlan' && mac !== undefined) {
      if (mac === attrs.backendData?.vtepMac && carriesIPv4(checks.config)) return `IPv6 VTEP MAC ${formatMac(mac)} is also its IPv4 VTEP MAC`;
      return this.macReason(mac, checks, 'IPv6 VTEP MAC');
    }
    return undefined;
  }

  /** A VTEP MAC that is ours or an accepted lease's: the neighbor and FDB entries keyed by it would be overwritten. */
  private macReason(mac: Mac, checks: LeaseChecks, what: string): string | undefined {
    if (mac === checks.ownVtepMac || mac === checks.ownVtepMac6) return `${what} ${formatMac(mac)} is ours`;
    const holder = this.macs.get(mac);
    if (holder === undefined) return undefined;
    const other = this.accepted.get(holder)!;
    return `${what} ${formatMac(mac)} is already used by ${formatLeaseSubnets(other.subnet, other.subnet6)} of ${describeHolder(other)}`;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  /** The right length first (a stray /25 never outranks the /24 it lies in), then older keys (create revision), then by key. */
  private compare(a: LeaseRecord, b: LeaseRecord): number {
    const config = this.checks?.config;
    const subnetLen = config?.subnetLen;
    const v6 = config?.ipv6;
    const fits = (r: LeaseRecord): number =>
      (config === undefined || !carriesIPv4(config) || r.subnet?.prefixLength === subnetLen) && (v6 === undefined || r.subnet6 === undefined || r.subnet6.prefixLength === v6.subnetLen) ? 0 : 1;
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
    const checks = this.checks;
    if (checks !== undefined && !isOwnLease(lease, checks.ownSubnet, checks.ownSubnet6)) {
      const vxlan = checks.config.backend.type === 'vxlan';
      if (carriesIPv4(checks.config)) {
        this.subnets.set(byCidr(lease.subnet), record.key);
        const mac = lease.attrs.backendData?.vtepMac;
        if (mac !== undefined && vxlan) this.macs.set(mac, record.key);
      }
      if (checks.config.ipv6 !== undefined && lease.subnet6 !== undefined) {
        this.subnets6.set(formatCidr6(lease.subnet6), record.key);
        const mac6 = lease.attrs.backendV6Data?.vtepMac;
        if (mac6 !== undefined && vxlan) this.macs.set(mac6, record.key);
      }
    }
    events.push({ type: 'added', lease });
    return lease;
  }

  private unaccept(key: string, lease: Lease): void {
    this.accepted.delete(key);
    if (this.subnets.get(byCidr(lease.subnet)) === key) this.subnets.delete(byCidr(lease.subnet));
    if (lease.subnet6 !== undefined && this.subnets6.get(formatCidr6(lease.subnet6)) === key) this.subnets6.delete(formatCidr6(lease.subnet6));
    for (const mac of [lease.attrs.backendData?.vtepMac, lease.attrs.backendV6Data?.vtepMac]) {
      if (mac !== undefined && this.macs.get(mac) === key) this.macs.delete(mac);
    }
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

  /** An accepted lease whose IPv6 subnet shares addresses with `subnet6` (the aligned container, else a scan). */
  private overlappingAccepted6(subnet6: Cidr6): Lease | undefined {
    const subnetLen = this.checks!.config.ipv6!.subnetLen;
    if (subnet6.prefixLength >= subnetLen) {
      const key = this.subnets6.get(formatCidr6({ address: subnet6.address & prefixMask6(subnetLen), prefixLength: subnetLen }));
      return key === undefined ? undefined : this.accepted.get(key);
    }
    for (const key of this.subnets6.values()) {
      const lease = this.accepted.get(key)!;
      if (subnets6Overlap(lease.subnet6!, subnet6)) return lease;
    }
    return undefined;
  }
}

/** "192.0.2.7", "2001:db8::7" (IPv6 only) or "192.0.2.7 / 2001:db8::7". */
function describeHolder(lease: Lease): string {
  const v6 = lease.attrs.publicIpv6;
  if (v6 === undefined) return formatIPv4(lease.attrs.publicIp);
  return lease.attrs.publicIp === 0 ? formatIPv6(v6) : `${formatIPv4(lease.attrs.publicIp)} / ${formatIPv6(v6)}`;
}
