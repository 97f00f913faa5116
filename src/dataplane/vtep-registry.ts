// Who may send us encapsulated traffic, and for which inner sources: underlay address -> the leased subnets that
// address holds. A node normally holds one lease; a list keeps the rare several (and a lease named twice) exact.
// Looked up once per received datagram: one Map probe, then a mask compare per subnet, nothing allocated.
//
// IPv6 (issue 12): a VTEP may also hold IPv6 subnets (a dual-stack or IPv6-only lease, flannel's BackendV6Data), and
// its underlay address may be IPv6 (PublicIPv6). IPv4 underlay addresses key a Map directly; IPv6 ones are found by
// their four words (vtepOf6Words) through a 30-bit hash, as route-table6.ts does, so a datagram makes no bigint.
import { type Cidr, type IPv4, prefixMask } from '../wire/address';
import { type Cidr6, type IPv6, hashIPv6Words, ipv6Words, prefixMask6 } from '../wire/address6';

/** One underlay address with a lease: the subnets whose addresses may appear as inner sources of its packets. */
export class LeasedVtep {
  /** Network addresses and masks, index-aligned; entries may repeat (one per lease naming this address). */
  private readonly networks: IPv4[] = [];
  private readonly masks: number[] = [];
  private readonly prefixLengths: number[] = [];
  /** IPv6 subnets: four network words and four mask words per entry (entry i at 4*i), and the Cidr6 for display. */
  private readonly networks6: number[] = [];
  private readonly masks6: number[] = [];
  private readonly cidrs6: Cidr6[] = [];

  /** IPv4 (number) or IPv6 (bigint) underlay address: `typeof underlayIp === 'bigint'` tells them apart. */
  constructor(readonly underlayIp: IPv4 | IPv6) {}

  /** Whether `address` (host order) lies in one of the subnets this VTEP holds, its VTEP address (.0) included. */
  holds(address: IPv4): boolean {
    const networks = this.networks;
    const masks = this.masks;
    for (let i = 0; i < networks.length; i++) {
      if (((address & masks[i]) >>> 0) === networks[i]) return true;
    }
    return false;
  }

  /** Whether the IPv6 address at buf[off, off + 16) lies in one of this VTEP's IPv6 subnets. No allocation. */
  holds6At(buf: Buffer, off: number): boolean {
    const n = this.networks6;
    const m = this.masks6;
    if (n.length === 0) return false;
    const a0 = buf.readUInt32BE(off);
    const a1 = buf.readUInt32BE(off + 4);
    const a2 = buf.readUInt32BE(off + 8);
    const a3 = buf.readUInt32BE(off + 12);
    for (let i = 0; i < n.length; i += 4) {
      if (((a0 & m[i]) >>> 0) === n[i] && ((a1 & m[i + 1]) >>> 0) === n[i + 1] && ((a2 & m[i + 2]) >>> 0) === n[i + 2] && ((a3 & m[i + 3]) >>> 0) === n[i + 3]) {
        return true;
      }
    }
    return false;
  }

  get subnets(): Cidr[] {
    return this.networks.map((address, i) => ({ address, prefixLength: this.prefixLengths[i] }));
  }

  get subnets6(): Cidr6[] {
    return [...this.cidrs6];
  }

  /** Entries of both families. */
  get size(): number {
    return this.networks.length + this.cidrs6.length;
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

  /** @internal */
  add6(subnet: Cidr6): void {
    const mask = prefixMask6(subnet.prefixLength);
    this.networks6.push(...ipv6Words(subnet.address & mask));
    this.masks6.push(...ipv6Words(mask));
    this.cidrs6.push({ address: subnet.address & mask, prefixLength: subnet.prefixLength });
  }

  /** @internal Removes one entry for `subnet6`; returns false when there was none. */
  remove6(subnet: Cidr6): boolean {
    const mask = prefixMask6(subnet.prefixLength);
    const i = this.cidrs6.findIndex((c) => c.address === (subnet.address & mask) && c.prefixLength === subnet.prefixLength);
    if (i < 0) return false;
    this.cidrs6.splice(i, 1);
    this.networks6.splice(4 * i, 4);
    this.masks6.splice(4 * i, 4);
    return true;
  }
}


interface Vtep6Entry {
  readonly words: [number, number, number, number];
  readonly vtep: LeasedVtep;
}

/** Underlay address -> LeasedVtep, kept by lease sync (addVtep / removeVtep per lease, addVtep6 / removeVtep6). */
export class VtepRegistry {
  private readonly vteps = new Map<IPv4, LeasedVtep>();
  /** IPv6 underlay addresses: the exact bigint, and hash of the words -> entries for the data path. */
  private readonly vteps6 = new Map<IPv6, LeasedVtep>();
  private readonly byHash6 = new Map<number, Vtep6Entry[]>();

  /** The VTEP at this IPv4 underlay address, or undefined for a sender without a lease (a stranger). */
  get(underlayIp: IPv4): LeasedVtep | undefined {
    return this.vteps.get(underlayIp);
  }

  /** The VTEP at the IPv6 underlay address given as words (most significant first). No allocation. */
  get6Words(w0: number, w1: number, w2: number, w3: number): LeasedVtep | undefined {
    const bucket = this.byHash6.get(hashIPv6Words(w0, w1, w2, w3));
    if (bucket === undefined) return undefined;
    for (let i = 0; i < bucket.length; i++) {
      const w = bucket[i].words;
      if (w[0] === w0 && w[1] === w1 && w[2] === w2 && w[3] === w3) return bucket[i].vtep;
    }
    return undefined;
  }

  /** The VTEP at either kind of underlay address (control path). */
  lookup(underlay: IPv4 | IPv6): LeasedVtep | undefined {
    return typeof underlay === 'bigint' ? this.vteps6.get(underlay) : this.vteps.get(underlay);
  }

  /** Records that the lease for `subnet` names `underlayIp` as its PublicIP. */
  add(underlayIp: IPv4, subnet: Cidr): void {
    this.vtepFor(underlayIp).add(subnet);
  }

  /** Undoes one add(underlayIp, subnet); the address is forgotten with its last subnet. */
  remove(underlayIp: IPv4, subnet: Cidr): void {
    const vtep = this.vteps.get(underlayIp);
    if (vtep === undefined) return;
    vtep.remove(subnet);
    if (vtep.size === 0) this.forget(vtep);
  }

  /** Records that the lease for `subnet6` names `underlay` (its PublicIPv6, or its PublicIP) for IPv6 inner traffic. */
  add6(underlay: IPv4 | IPv6, subnet6: Cidr6): void {
    this.vtepFor(underlay).add6(subnet6);
  }

  /** Undoes one add6(underlay, subnet6). */
  remove6(underlay: IPv4 | IPv6, subnet6: Cidr6): void {
    const vtep = this.lookup(underlay);
    if (vtep === undefined) return;
    vtep.remove6(subnet6);
    if (vtep.size === 0) this.forget(vtep);
  }

  /** IPv4 underlay addresses with a lease. */
  get addresses(): IPv4[] {
    return [...this.vteps.keys()];
  }

  /** IPv6 underlay addresses with a lease. */
  get addresses6(): IPv6[] {
    return [...this.vteps6.keys()];
  }

  private vtepFor(underlay: IPv4 | IPv6): LeasedVtep {
    let vtep = this.lookup(underlay);
    if (vtep !== undefined) return vtep;
    vtep = new LeasedVtep(underlay);
    if (typeof underlay === 'bigint') {
      this.vteps6.set(underlay, vtep);
      const words = ipv6Words(underlay);
      const hash = hashIPv6Words(...words);
      let bucket = this.byHash6.get(hash);
      if (bucket === undefined) {
        bucket = [];
        this.byHash6.set(hash, bucket);
      }
      bucket.push({ words, vtep });
    } else {
      this.vteps.set(underlay, vtep);
    }
    return vtep;
  }

  private forget(vtep: LeasedVtep): void {
    const underlay = vtep.underlayIp;
    if (typeof underlay !== 'bigint') {
      this.vteps.delete(underlay);
      return;
    }
    this.vteps6.delete(underlay);
    const words = ipv6Words(underlay);
    const hash = hashIPv6Words(...words);
    const bucket = this.byHash6.get(hash);
    if (bucket === undefined) return;
    const i = bucket.findIndex((e) => e.vtep === vtep);
    if (i >= 0) bucket.splice(i, 1);
    if (bucket.length === 0) this.byHash6.delete(hash);
  }
}
