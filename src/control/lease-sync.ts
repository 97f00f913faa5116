// Keeps the data plane's tables equal to the other nodes' leases, as flannel's vxlan and ipip backends keep the
// kernel's: per remote lease a neighbor entry, an FDB entry and a route (VXLAN) or one route (IP-in-IP), added in
// that order and removed in reverse. Our own lease and leases of another backend type are ignored, as flannel does.
//
// IPv6 (vxlan, as flannel's flannel-v6.<VNI> device: pkg/backend/vxlan/vxlan_network.go): per remote lease with an
// IPv6 subnet and a BackendV6Data VtepMAC, neighbor `<v6 subnet>:: -> v6 VtepMAC` (neighbors6), FDB
// `v6 VtepMAC -> PublicIPv6` (fdb6) when the lease has a PublicIPv6 and we have an IPv6 underlay socket, else
// `v6 VtepMAC -> PublicIP` in the IPv4 fdb (IPv6 pods over the IPv4 underlay, vxtun to vxtun), and route
// `<v6 subnet> via <v6 subnet>::` (routes6); addVtep6 admits the IPv6 pods of that subnet from that underlay address.
import type { ForwardingTables } from '../dataplane/tables';
import type { EncapName } from '../dataplane/tables';
import { type Cidr, formatCidr, formatIPv4, formatMac } from '../wire/address';
import { type Cidr6, formatCidr6, formatIPv6 } from '../wire/address6';
import type { Lease } from './lease';
import { formatLeaseSubnets, hasIPv4Subnet, leaseAttrsEqual } from './lease';
import { type LeaseEvent, isOwnLease } from './lease-validator';
import type { Logger } from './log';

/** A lease's place in `applied`: its IPv4 subnet, or its IPv6 one in an IPv6-only lease (all share 0.0.0.0/0). */
function key(lease: Lease): string {
  return hasIPv4Subnet(lease.subnet) || lease.subnet6 === undefined ? formatCidr(lease.subnet) : formatCidr6(lease.subnet6);
}

/** What LeaseSync needs to program IPv6: our IPv6 subnet, and whether we have an IPv6 underlay socket. */
export interface LeaseSyncIpv6 {
  ownSubnet6: Cidr6;
  /** true: leases with a PublicIPv6 are reached over the IPv6 underlay (fdb6); false: over the IPv4 one (fdb). */
  underlay6: boolean;
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
    /** Present when the network carries IPv6 (and the backend is vxlan): IPv6 routes, neighbors and FDB entries too. */
    private readonly ipv6?: LeaseSyncIpv6,
  ) {}

  get leases(): Lease[] {
    return [...this.applied.values()];
  }

  /** Makes the tables reflect exactly these leases (at start, and after the store lost our watch's history). */
  applySnapshot(leases: Lease[]): void {
    const wanted = new Map(leases.filter((l) => this.accepts(l)).map((l) => [key(l), l]));
    for (const [subnetKey, lease] of this.applied) if (!wanted.has(subnetKey)) this.remove(lease);
    for (const lease of wanted.values()) this.add(lease);
    this.log.info('tables synced with the store', { routes: this.applied.size });
  }

  applyEvents(events: LeaseEvent[]): void {
    for (const event of events) {
      if (event.type === 'added') {
        if (this.accepts(event.lease)) {
          this.add(event.lease);
          this.log.info('node joined', { subnet: formatLeaseSubnets(event.lease.subnet, event.lease.subnet6), publicIp: publicText(event.lease) });
        }
        else if (this.applied.has(key(event.lease))) this.remove(this.applied.get(key(event.lease))!);
        continue;
      }
      // A removal undoes what we applied for that subnet, whatever the event still says of it.
      const current = this.applied.get(key(event.lease));
      if (current !== undefined) {
        this.remove(current);
        this.log.info('node left', { subnet: formatLeaseSubnets(current.subnet, current.subnet6), publicIp: publicText(current) });
      }
    }
  }

  private accepts(lease: Lease): boolean {
    if (isOwnLease(lease, this.ownSubnet, this.ipv6?.ownSubnet6)) return false;
    if (lease.attrs.backendType !== this.encap) {
      this.log.debug('ignoring lease of another backend type', { subnet: formatCidr(lease.subnet), backendType: lease.attrs.backendType });
      return false;
    }
    // A lease the kernel routes directly (DirectRouting) has nothing for us to carry, and nothing wrong with it.
    if (!this.carries4(lease) && !this.carries6(lease) && !this.isDirect(lease)) {
      this.log.warn('ignoring a lease with nothing we carry (no IPv4 subnet with a VtepMAC, no IPv6 subnet with a v6 VtepMAC)', {
        subnet: formatLeaseSubnets(lease.subnet, lease.subnet6),
      });
      return false;
    }
    return true;
  }

  /**
   * Whether we program the lease's IPv4 half: we carry IPv4, it has an IPv4 subnet (and, vxlan, a VtepMAC), and the
   * kernel does not route it directly (DirectRouting programs IPv4 routes only: the IPv6 half stays encapsulated).
   */
  private carries4(lease: Lease): boolean {
    if (!hasIPv4Subnet(this.ownSubnet) || !hasIPv4Subnet(lease.subnet) || this.isDirect(lease)) return false;
    return this.encap !== 'vxlan' || lease.attrs.backendData?.vtepMac !== undefined;
  }

  /** Whether we program the lease's IPv6 half: vxlan, we carry IPv6, it has an IPv6 subnet, a v6 VtepMAC, an underlay. */
  private carries6(lease: Lease): boolean {
    if (this.ipv6 === undefined || this.encap !== 'vxlan' || lease.subnet6 === undefined) return false;
    if (lease.attrs.backendV6Data?.vtepMac === undefined) return false;
    return this.underlay6Of(lease) !== undefined;
  }

  /** Where the lease's IPv6 VTEP is reached: its PublicIPv6 over our IPv6 socket, else its PublicIP (IPv4 underlay). */
  private underlay6Of(lease: Lease): { family: 6; ip: bigint } | { family: 4; ip: number } | undefined {
    const v6 = lease.attrs.publicIpv6;
    if (v6 !== undefined && this.ipv6?.underlay6) return { family: 6, ip: v6 };
    if (lease.attrs.publicIp !== 0 && hasIPv4Subnet(this.ownSubnet)) return { family: 4, ip: lease.attrs.publicIp };
    return undefined;
  }

  private add(lease: Lease): void {
    const current = this.applied.get(key(lease));
    if (current !== undefined) {
      if (leaseAttrsEqual(current.attrs, lease.attrs) && sameSubnet6(current.subnet6, lease.subnet6)) {
        this.applied.set(key(lease), lease); // a renewal: same entries, new expiry
        return;
      }
      // A node came back with another MAC or address: replace its entries rather than strand them.
      this.remove(current);
    }
    if (this.carries4(lease)) this.add4(lease);
    if (this.carries6(lease)) this.add6(lease);
    this.applied.set(key(lease), lease);
  }

  private add4(lease: Lease): void {
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
  }

  private add6(lease: Lease): void {
    const tables = this.target.tables;
    const subnet6 = lease.subnet6!;
    const mac = lease.attrs.backendV6Data!.vtepMac!;
    const underlay = this.underlay6Of(lease)!;
    const gateway = subnet6.address; // flannel: route via <v6 subnet>:: onlink, neighbor <v6 subnet>:: -> v6 VtepMAC
    tables.neighbors6.set(gateway, mac);
    if (underlay.family === 6) tables.fdb6.set(mac, underlay.ip);
    else tables.fdb.set(mac, underlay.ip);
    tables.routes6.set(subnet6, { subnet: subnet6, gateway, encap: 'vxlan' });
    tables.addVtep6(underlay.ip, subnet6);
    this.log.debug('IPv6 route added', {
      subnet: formatCidr6(subnet6),
      via: formatIPv6(gateway),
      vtepMac: formatMac(mac),
      underlay: underlay.family === 6 ? formatIPv6(underlay.ip) : formatIPv4(underlay.ip),
    });
  }

  private remove(lease: Lease): void {
    const tables = this.target.tables;
    if (this.carries4(lease)) {
      tables.routes.delete(lease.subnet);
      if (this.encap === 'vxlan') {
        const mac = lease.attrs.backendData!.vtepMac!;
        if (tables.fdb.get(mac) === lease.attrs.publicIp) tables.fdb.delete(mac);
        if (tables.neighbors.get(lease.subnet.address) === mac) tables.neighbors.delete(lease.subnet.address);
      }
      tables.removeVtep(lease.attrs.publicIp, lease.subnet);
    }
    if (this.carries6(lease)) {
      const subnet6 = lease.subnet6!;
      const mac = lease.attrs.backendV6Data!.vtepMac!;
      const underlay = this.underlay6Of(lease)!;
      tables.routes6.delete(subnet6);
      if (underlay.family === 6 && tables.fdb6.get(mac) === underlay.ip) tables.fdb6.delete(mac);
      if (underlay.family === 4 && tables.fdb.get(mac) === underlay.ip) tables.fdb.delete(mac);
      if (tables.neighbors6.get(subnet6.address) === mac) tables.neighbors6.delete(subnet6.address);
      tables.removeVtep6(underlay.ip, subnet6);
    }
    this.applied.delete(key(lease));
    this.log.debug('route removed', { subnet: formatLeaseSubnets(lease.subnet, lease.subnet6), publicIp: publicText(lease) });
  }
}

function sameSubnet6(a: Cidr6 | undefined, b: Cidr6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.address === b.address && a.prefixLength === b.prefixLength;
}

function publicText(lease: Lease): string {
  const v6 = lease.attrs.publicIpv6;
  if (v6 === undefined) return formatIPv4(lease.attrs.publicIp);
  return lease.attrs.publicIp === 0 ? formatIPv6(v6) : `${formatIPv4(lease.attrs.publicIp)} ${formatIPv6(v6)}`;
}
