// Who may send us encapsulated traffic, and for which inner sources: underlay address -> the leased subnets that
// address holds. A node normally holds one lease; a list keeps the rare several (and a lease named twice) exact.
// Looked up once per received datagram: one Map probe, then a mask compare per subnet, nothing allocated.
import { type Cidr, type IPv4, prefixMask } from '../wire/address';

/** One underlay address with a lease: the subnets whose addresses may appear as inner sources of its packets. */
export class LeasedVtep {
  /** Network addresses and masks, index-aligned; entries may repeat (one per lease naming this address). */
  private readonly networks: IPv4[] = [];
  private readonly masks: number[] = [];
  private readonly prefixLengths: number[] = [];

  constructor(readonly underlayIp: IPv4) {}

  /** Whether `address` (host order) lies in one of the subnets this VTEP holds, its VTEP address (.0) included. */
  holds(address: IPv4): boolean {
    const networks = this.networks;
    const masks = this.masks;
    for (let i = 0; i < networks.length; i++) {
      if (((address & masks[i]) >>> 0) === networks[i]) return true;
    }
    return false;
  }

  get subnets(): Cidr[] {
    return this.networks.map((address, i) => ({ address, prefixLength: this.prefixLengths[i] }));
  }

  get size(): number {
    return this.networks.length;
  }

  /** @internal */
  add(subnet: Cidr): void {
    this.networks.push(subnet.address >>> 0);
    this.masks.push(prefixMask(subnet.prefixLength));
    this.prefixLengths.push(subnet.prefixLength);
  }

  /** @internal Removes one entry for `subnet`; returns false when there was none. */
  remove(subnet: Cidr): boolean {
    const mask = prefixMask(subnet.prefixLength);
    for (let i = 0; i < this.networks.length; i++) {
      if (this.networks[i] === subnet.address >>> 0 && this.masks[i] === mask) {
        this.networks.splice(i, 1);
        this.masks.splice(i, 1);
        this.prefixLengths.splice(i, 1);
        return true;
      }
    }
    return false;
  }
}

/** Underlay address -> LeasedVtep, kept by lease sync (addVtep / removeVtep per lease). */
export class VtepRegistry {
  private readonly vteps = new Map<IPv4, LeasedVtep>();

  /** The VTEP at this underlay address, or undefined for a sender without a lease (a stranger). */
  get(underlayIp: IPv4): LeasedVtep | undefined {
    return this.vteps.get(underlayIp);
  }

  /** Records that the lease for `subnet` names `underlayIp` as its PublicIP. */
  add(underlayIp: IPv4, subnet: Cidr): void {
    let vtep = this.vteps.get(underlayIp);
    if (vtep === undefined) {
      vtep = new LeasedVtep(underlayIp);
      this.vteps.set(underlayIp, vtep);
    }
    vtep.add(subnet);
  }

  /** Undoes one add(underlayIp, subnet); the address is forgotten with its last subnet. */
  remove(underlayIp: IPv4, subnet: Cidr): void {
    const vtep = this.vteps.get(underlayIp);
    if (vtep === undefined) return;
    vtep.remove(subnet);
    if (vtep.size === 0) this.vteps.delete(underlayIp);
  }

  get addresses(): IPv4[] {
    return [...this.vteps.keys()];
  }
}
