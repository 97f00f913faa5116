// Kernel routes straight to a peer's underlay address, with no encapsulation: every lease for flannel's host-gw
// backend, and for vxlan/ipip with DirectRouting (Calico's CrossSubnet) the leases of nodes on our own L2 subnet.
// `<subnet> via <PublicIP> dev <underlay>` is more specific than the cluster route into the TUN, so the kernel
// takes it. A host-gw peer that is not L2-adjacent cannot be reached this way: it is refused, loudly.
// host-gw IPv6 (flannel pkg/backend/hostgw: routes via the lease's PublicIPv6): `<subnet6> via <PublicIPv6> dev
// <underlay>`. The kernel itself refuses a gateway that is not on-link (logged). vxlan/ipip DirectRouting stays IPv4:
// the IPv6 half of such a lease is encapsulated (lease-sync.ts).
import type { HostInterface } from '../io/interfaces';
import { deleteRoute, deleteRoute6, replaceRoute, replaceRoute6Via } from '../io/kernel-routes';
import { type Cidr, cidrContains, cidrEquals, formatCidr, formatIPv4 } from '../wire/address';
import { type Cidr6, cidr6Equals, formatCidr6, formatIPv6 } from '../wire/address6';
import type { Lease } from './lease';
import type { LeaseEvent } from './lease-validator';
import type { Logger } from './log';

export interface DirectRoute {
  subnet: string;
  via: string;
  dev: string;
}

export class DirectRoutes {
  private readonly routes = new Map<string, Lease>();
  /** host-gw IPv6: leases routed via their PublicIPv6, by IPv6 subnet. */
  private readonly routes6 = new Map<string, Lease>();
  /** Kernel changes run one at a time, in event order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly underlay: HostInterface,
    private readonly ownSubnet: Cidr,
    private readonly backendType: string,
    /** host-gw: every lease must be direct; vxlan/ipip DirectRouting: only the adjacent ones are. */
    private readonly required: boolean,
    private readonly log: Logger,
    /** host-gw in a dual-stack network: our IPv6 subnet; other leases' IPv6 subnets are routed via their PublicIPv6. */
    private readonly ownSubnet6?: Cidr6,
  ) {}

  /** Whether this lease is routed directly (so the encapsulating tables should leave it out). */
  isDirect(lease: Lease): boolean {
    return lease.attrs.backendType === this.backendType && cidrContains(this.underlay.subnet, lease.attrs.publicIp);
  }

  get current(): DirectRoute[] {
    return [...this.routes.values()].map((l) => ({ subnet: formatCidr(l.subnet), via: formatIPv4(l.attrs.publicIp), dev: this.underlay.name }));
  }

  /** host-gw IPv6 routes, as `ip -6 route` shows them. */
  get current6(): DirectRoute[] {
    return [...this.routes6.values()].map((l) => ({ subnet: formatCidr6(l.subnet6!), via: formatIPv6(l.attrs.publicIpv6!), dev: this.underlay.name }));
  }

  applySnapshot(leases: Lease[]): Promise<void> {
    const wanted = new Map(leases.filter((l) => this.wants(l)).map((l) => [formatCidr(l.subnet), l]));
    for (const [key, lease] of this.routes) if (!wanted.has(key)) this.remove(lease);
    for (const lease of wanted.values()) this.add(lease);
    const wanted6 = new Map(leases.filter((l) => this.wants6(l)).map((l) => [formatCidr6(l.subnet6!), l]));
    for (const [key, lease] of this.routes6) if (!wanted6.has(key)) this.remove6(lease);
    for (const lease of wanted6.values()) this.add6(lease);
    return this.queue;
  }

  applyEvents(events: LeaseEvent[]): Promise<void> {
    for (const event of events) {
      const key6 = event.lease.subnet6 && formatCidr6(event.lease.subnet6);
      if (event.type === 'added') {
        if (this.wants(event.lease)) this.add(event.lease);
        else if (this.routes.has(formatCidr(event.lease.subnet))) this.remove(this.routes.get(formatCidr(event.lease.subnet))!);
        if (this.wants6(event.lease)) this.add6(event.lease);
        else if (key6 !== undefined && this.routes6.has(key6)) this.remove6(this.routes6.get(key6)!);
      } else {
        const current = this.routes.get(formatCidr(event.lease.subnet));
        if (current !== undefined) this.remove(current);
        const current6 = key6 === undefined ? undefined : this.routes6.get(key6);
        if (current6 !== undefined) this.remove6(current6);
      }
    }
    return this.queue;
  }

  private wants(lease: Lease): boolean {
    if (cidrEquals(lease.subnet, this.ownSubnet) || lease.attrs.backendType !== this.backendType || lease.subnet.prefixLength === 0) return false;
    if (this.isDirect(lease)) return true;
    if (this.required) {
      this.log.error(
        `host-gw cannot reach ${formatCidr(lease.subnet)}: its node ${formatIPv4(lease.attrs.publicIp)} is not on our L2 subnet ` +
          `${formatCidr(this.underlay.subnet)} (${this.underlay.name}); host-gw needs every node on one segment: use vxlan or ipip, ` +
          'with DirectRouting for the adjacent ones',
      );
    }
    return false;
  }

  /** host-gw in a dual-stack network: another node's IPv6 subnet with a PublicIPv6 to route it via. */
  private wants6(lease: Lease): boolean {
    if (!this.required || this.ownSubnet6 === undefined || lease.subnet6 === undefined) return false;
    if (cidr6Equals(lease.subnet6, this.ownSubnet6) || lease.attrs.backendType !== this.backendType) return false;
    if (lease.attrs.publicIpv6 !== undefined) return true;
    this.log.error(`host-gw cannot route ${formatCidr6(lease.subnet6)}: its lease has no PublicIPv6 (start that node's agent with --public-ipv6)`);
    return false;
  }

  private add6(lease: Lease): void {
    const key = formatCidr6(lease.subnet6!);
    const previous = this.routes6.get(key);
    if (previous !== undefined && previous.attrs.publicIpv6 === lease.attrs.publicIpv6) return;
    this.routes6.set(key, lease);
    const via = formatIPv6(lease.attrs.publicIpv6!);
    this.enqueue(async () => {
      await replaceRoute6Via(key, via, this.underlay.name);
      this.log.info('direct IPv6 route added', { subnet: key, via, dev: this.underlay.name });
    });
  }

  private remove6(lease: Lease): void {
    const key = formatCidr6(lease.subnet6!);
    this.routes6.delete(key);
    this.enqueue(async () => {
      await deleteRoute6(key, this.underlay.name);
      this.log.info('direct IPv6 route removed', { subnet: key });
    });
  }

  private add(lease: Lease): void {
    const key = formatCidr(lease.subnet);
    const previous = this.routes.get(key);
    if (previous !== undefined && previous.attrs.publicIp === lease.attrs.publicIp) return;
    this.routes.set(key, lease);
    const via = formatIPv4(lease.attrs.publicIp);
    this.enqueue(async () => {
      await replaceRoute(key, this.underlay.name, via);
      this.log.info('direct route added', { subnet: key, via, dev: this.underlay.name });
    });
  }

  private remove(lease: Lease): void {
    const key = formatCidr(lease.subnet);
    this.routes.delete(key);
    this.enqueue(async () => {
      await deleteRoute(key, this.underlay.name);
      this.log.info('direct route removed', { subnet: key });
    });
  }

  private enqueue(change: () => Promise<void>): void {
    this.queue = this.queue.then(change).catch((err: Error) => this.log.error('kernel route change failed', { error: err.message }));
  }
}
