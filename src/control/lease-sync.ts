// Keeps the data plane's tables equal to the other nodes' leases, as flannel's vxlan and ipip backends keep the
// kernel's: per remote lease a neighbor entry, an FDB entry and a route (VXLAN) or one route (IP-in-IP), added in
// that order and removed in reverse. Our own lease and leases of another backend type are ignored, as flannel does.
import type { ForwardingTables } from '../dataplane/tables';
import type { EncapName } from '../dataplane/tables';
import { type Cidr, cidrEquals, formatCidr, formatIPv4, formatMac } from '../wire/address';
import type { Lease } from './lease';
import { leaseAttrsEqual } from './lease';
import type { LeaseEvent } from './lease-validator';
import type { Logger } from './log';

function key(subnet: Cidr): string {
  return formatCidr(subnet);
}

export class LeaseSync {
  /** The leases our tables currently reflect, by subnet. */
  private readonly applied = new Map<string, Lease>();

  constructor(
    private readonly target: { tables: ForwardingTables },
    private readonly ownSubnet: Cidr,
    private readonly encap: EncapName,
    private readonly log: Logger,
    /** Leases the kernel routes directly (DirectRouting): they stay out of the encapsulating tables. */
    private readonly isDirect: (lease: Lease) => boolean = () => false,
  ) {}

  get leases(): Lease[] {
    return [...this.applied.values()];
  }

  /** Makes the tables reflect exactly these leases (at start, and after the store lost our watch's history). */
  applySnapshot(leases: Lease[]): void {
    const wanted = new Map(leases.filter((l) => this.accepts(l)).map((l) => [key(l.subnet), l]));
    for (const [subnetKey, lease] of this.applied) if (!wanted.has(subnetKey)) this.remove(lease);
    for (const lease of wanted.values()) this.add(lease);
    this.log.info('tables synced with the store', { routes: this.applied.size });
  }

  applyEvents(events: LeaseEvent[]): void {
    for (const event of events) {
      if (event.type === 'added') {
        if (this.accepts(event.lease)) {
          this.add(event.lease);
          this.log.info('node joined', { subnet: formatCidr(event.lease.subnet), publicIp: formatIPv4(event.lease.attrs.publicIp) });
        }
        else if (this.applied.has(key(event.lease.subnet))) this.remove(this.applied.get(key(event.lease.subnet))!);
        continue;
      }
      // A removal undoes what we applied for that subnet, whatever the event still says of it.
      const current = this.applied.get(key(event.lease.subnet));
      if (current !== undefined) {
        this.remove(current);
        this.log.info('node left', { subnet: formatCidr(current.subnet), publicIp: formatIPv4(current.attrs.publicIp) });
      }
    }
  }

  private accepts(lease: Lease): boolean {
    if (cidrEquals(lease.subnet, this.ownSubnet) || this.isDirect(lease)) return false;
    if (lease.attrs.backendType !== this.encap) {
      this.log.debug('ignoring lease of another backend type', { subnet: formatCidr(lease.subnet), backendType: lease.attrs.backendType });
      return false;
    }
    if (this.encap === 'vxlan' && lease.attrs.backendData?.vtepMac === undefined) {
      this.log.warn('ignoring vxlan lease without a VtepMAC', { subnet: formatCidr(lease.subnet) });
      return false;
    }
    return true;
  }

  private add(lease: Lease): void {
    const current = this.applied.get(key(lease.subnet));
    if (current !== undefined) {
      if (leaseAttrsEqual(current.attrs, lease.attrs)) {
        this.applied.set(key(lease.subnet), lease); // a renewal: same entries, new expiry
        return;
      }
      // A node came back with another MAC or address: replace its entries rather than strand them.
      this.remove(current);
    }
    const tables = this.target.tables;
    const publicIp = lease.attrs.publicIp;
    if (this.encap === 'vxlan') {
      const mac = lease.attrs.backendData!.vtepMac!;
      const gateway = lease.subnet.address; // flannel: route via <subnet .0>, neighbor <subnet .0> -> VtepMAC
      tables.neighbors.set(gateway, mac);
      tables.fdb.set(mac, publicIp);
      tables.routes.set(lease.subnet, { subnet: lease.subnet, gateway, encap: 'vxlan' });
      this.log.debug('route added', { subnet: formatCidr(lease.subnet), via: formatIPv4(gateway), vtepMac: formatMac(mac), publicIp: formatIPv4(publicIp) });
    } else {
      tables.routes.set(lease.subnet, { subnet: lease.subnet, gateway: publicIp, encap: 'ipip' });
      this.log.debug('route added', { subnet: formatCidr(lease.subnet), via: formatIPv4(publicIp) });
    }
    tables.addVtep(publicIp, lease.subnet);
    this.applied.set(key(lease.subnet), lease);
  }

  private remove(lease: Lease): void {
    const tables = this.target.tables;
    tables.routes.delete(lease.subnet);
    if (this.encap === 'vxlan') {
      const mac = lease.attrs.backendData!.vtepMac!;
      if (tables.fdb.get(mac) === lease.attrs.publicIp) tables.fdb.delete(mac);
      if (tables.neighbors.get(lease.subnet.address) === mac) tables.neighbors.delete(lease.subnet.address);
    }
    tables.removeVtep(lease.attrs.publicIp, lease.subnet);
    this.applied.delete(key(lease.subnet));
    this.log.debug('route removed', { subnet: formatCidr(lease.subnet), publicIp: formatIPv4(lease.attrs.publicIp) });
  }
}
