// The forwarding state of one node, in the shape flannel gives the kernel: per remote lease one route, and for VXLAN
// one neighbor (ARP) entry and one FDB entry. Route -> neighbor -> FDB is resolved per packet so that a trace can show
// each hit, exactly as `ip route` / `ip neigh` / `bridge fdb` would.
//
// Tables are changed only between batches (the engine and the control plane share one event loop), so a batch always
// sees one consistent state: that is our "atomic swap", without copying 10,000 routes on every lease event.
//
// IPv6 (issue 12) mirrors flannel's second device, flannel-v6.<VNI> (pkg/backend/vxlan/vxlan_network.go): per remote
// lease with an IPv6 subnet, route `<v6 subnet> via <v6 subnet>:: onlink`, neighbor `<v6 subnet>:: lladdr <v6 VtepMAC>`,
// FDB `<v6 VtepMAC> dst <PublicIPv6>`. A v6 VtepMAC found in `fdb` (IPv4) instead of `fdb6` means IPv6 inner packets
// over the IPv4 underlay (a peer without PublicIPv6); the engine looks in fdb6 first, then fdb.
import { type Cidr, type IPv4, type Mac } from '../wire/address';
import type { Cidr6, IPv6 } from '../wire/address6';
import { RouteTable } from './route-table';
import { RouteTable6 } from './route-table6';
import { type LeasedVtep, VtepRegistry } from './vtep-registry';

export type EncapName = 'vxlan' | 'ipip';

export interface Route {
  readonly subnet: Cidr;
  /** VXLAN: the remote subnet's .0, resolved through the neighbor table. IP-in-IP: the remote underlay address. */
  readonly gateway: IPv4;
  readonly encap: EncapName;
}

export interface Route6 {
  readonly subnet: Cidr6;
  /** VXLAN: the remote IPv6 subnet's address (`<subnet>::`), resolved through neighbors6. */
  readonly gateway: IPv6;
  readonly encap: EncapName;
}

export class ForwardingTables {
  readonly routes = new RouteTable<Route>();
  /** Overlay next hop -> remote VTEP MAC (flannel: `<subnet .0> lladdr <VtepMAC> nud permanent`). */
  readonly neighbors = new Map<IPv4, Mac>();
  /** Remote VTEP MAC -> its underlay address (flannel: `bridge fdb append <VtepMAC> dst <PublicIP>`). */
  readonly fdb = new Map<Mac, IPv4>();
  /** IPv6 routes: longest-prefix match by four words read from the packet (lookupAt), no bigint per packet. */
  readonly routes6 = new RouteTable6<Route6>();
  /** IPv6 overlay next hop (`<remote v6 subnet>::`) -> remote v6 VTEP MAC (flannel's `ip -6 neigh` entry). */
  readonly neighbors6 = new Map<IPv6, Mac>();
  /** Remote v6 VTEP MAC -> its PublicIPv6 (an IPv6 underlay). Not found here: looked up in `fdb` (IPv4 underlay). */
  readonly fdb6 = new Map<Mac, IPv6>();
  /** Underlay addresses we accept encapsulated traffic from, each with the leased subnets its inner sources lie in. */
  private readonly vteps = new VtepRegistry();

  isKnownVtep(underlayIp: IPv4): boolean {
    return this.vteps.get(underlayIp) !== undefined;
  }

  /** The leased VTEP at `underlayIp` (one Map probe), or undefined for a sender without a lease. */
  vtepOf(underlayIp: IPv4): LeasedVtep | undefined {
    return this.vteps.get(underlayIp);
  }

  /** The lease for `subnet` names `underlayIp` as its PublicIP: accept its packets with inner sources in `subnet`. */
  addVtep(underlayIp: IPv4, subnet: Cidr): void {
    this.vteps.add(underlayIp, subnet);
  }

  /** Undoes one addVtep(underlayIp, subnet). */
  removeVtep(underlayIp: IPv4, subnet: Cidr): void {
    this.vteps.remove(underlayIp, subnet);
  }

  get knownVteps(): IPv4[] {
    return this.vteps.addresses;
  }

  /**
   * The lease for `subnet6` names `underlay` for its IPv6 pods: its PublicIPv6 (bigint), or its PublicIP (number) when
   * IPv6 inner packets travel over the IPv4 underlay. Inner IPv6 sources in `subnet6` are then accepted from it.
   */
  addVtep6(underlay: IPv4 | IPv6, subnet6: Cidr6): void {
    this.vteps.add6(underlay, subnet6);
  }

  /** Undoes one addVtep6(underlay, subnet6). */
  removeVtep6(underlay: IPv4 | IPv6, subnet6: Cidr6): void {
    this.vteps.remove6(underlay, subnet6);
  }

  /** The leased VTEP at an IPv6 underlay address given as four words, most significant first (no allocation). */
  vtepOf6Words(w0: number, w1: number, w2: number, w3: number): LeasedVtep | undefined {
    return this.vteps.get6Words(w0, w1, w2, w3);
  }

  /** The leased VTEP at an underlay address of either family (control path, status, tests). */
  vtepOfAny(underlay: IPv4 | IPv6): LeasedVtep | undefined {
    return this.vteps.lookup(underlay);
  }

  isKnownVtep6(underlay: IPv6): boolean {
    return this.vteps.lookup(underlay) !== undefined;
  }

  /** IPv6 underlay addresses we accept encapsulated traffic from. */
  get knownVteps6(): IPv6[] {
    return this.vteps.addresses6;
  }
}
