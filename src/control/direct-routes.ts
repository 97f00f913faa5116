// Kernel routes straight to a peer's underlay address, with no encapsulation: every lease for flannel's host-gw
// backend, and for vxlan/ipip with DirectRouting (Calico's CrossSubnet) the leases of nodes on our own L2 subnet.
// `<subnet> via <PublicIP> dev <underlay>` is more specific than the cluster route into the TUN, so the kernel
// takes it. A host-gw peer that is not L2-adjacent cannot be reached this way: it is refused, loudly.
import type { HostInterface } from '../io/interfaces';
import { deleteRoute, replaceRoute } from '../io/kernel-routes';
import { type Cidr, cidrContains, cidrEquals, formatCidr, formatIPv4 } from '../wire/address';
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
  /** Kernel changes run one at a time, in event order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly underlay: HostInterface,
    private readonly ownSubnet: Cidr,
    private readonly backendType: string,
    /** host-gw: every lease must be direct; vxlan/ipip DirectRouting: only the adjacent ones are. */
    private readonly required: boolean,
    private readonly log: Logger,
  ) {}

  /** Whether this lease is routed directly (so the encapsulating tables should leave it out). */
  isDirect(lease: Lease): boolean {
    return lease.attrs.backendType === this.backendType && cidrContains(this.underlay.subnet, lease.attrs.publicIp);
  }

  get current(): DirectRoute[] {
    return [...this.routes.values()].map((l) => ({ subnet: formatCidr(l.subnet), via: formatIPv4(l.attrs.publicIp), dev: this.underlay.name }));
  }

  applySnapshot(leases: Lease[]): Promise<void> {
    const wanted = new Map(leases.filter((l) => this.wants(l)).map((l) => [formatCidr(l.subnet), l]));
    for (const [key, lease] of this.routes) if (!wanted.has(key)) this.remove(lease);
    for (const lease of wanted.values()) this.add(lease);
    return this.queue;
  }

  applyEvents(events: LeaseEvent[]): Promise<void> {
    for (const event of events) {
      if (event.type === 'added') {
        if (this.wants(event.lease)) this.add(event.lease);
        else if (this.routes.has(formatCidr(event.lease.subnet))) this.remove(this.routes.get(formatCidr(event.lease.subnet))!);
      } else {
        const current = this.routes.get(formatCidr(event.lease.subnet));
        if (current !== undefined) this.remove(current);
      }
    }
    return this.queue;
  }

  private wants(lease: Lease): boolean {
    if (cidrEquals(lease.subnet, this.ownSubnet) || lease.attrs.backendType !== this.backendType) return false;
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
