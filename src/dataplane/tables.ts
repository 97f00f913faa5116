// The forwarding state of one node, in the shape flannel gives the kernel: per remote lease one route, and for VXLAN
// one neighbor (ARP) entry and one FDB entry. Route -> neighbor -> FDB is resolved per packet so that a trace can show
// each hit, exactly as `ip route` / `ip neigh` / `bridge fdb` would.
//
// Tables are changed only between batches (the engine and the control plane share one event loop), so a batch always
// sees one consistent state: that is our "atomic swap", without copying 10,000 routes on every lease event.
import { type Cidr, type IPv4, type Mac } from '../wire/address';
import { RouteTable } from './route-table';
import { type LeasedVtep, VtepRegistry } from './vtep-registry';

export type EncapName = 'vxlan' | 'ipip';

export interface Route {
  readonly subnet: Cidr;
  /** VXLAN: the remote subnet's .0, resolved through the neighbor table. IP-in-IP: the remote underlay address. */
  readonly gateway: IPv4;
  readonly encap: EncapName;
}

export class ForwardingTables {
  readonly routes = new RouteTable<Route>();
  /** Overlay next hop -> remote VTEP MAC (flannel: `<subnet .0> lladdr <VtepMAC> nud permanent`). */
  readonly neighbors = new Map<IPv4, Mac>();
  /** Remote VTEP MAC -> its underlay address (flannel: `bridge fdb append <VtepMAC> dst <PublicIP>`). */
  readonly fdb = new Map<Mac, IPv4>();
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
}
