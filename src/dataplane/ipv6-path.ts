// The IPv6 half of the engine's per-packet decisions (issue 12), kept beside engine.ts so the IPv4 loops read as
// before: checks of an IPv6 packet from the TUN (header, extension-header chain), route -> neighbor -> FDB resolution
// in flannel's IPv6 shape (routes6, neighbors6, then fdb6 for an IPv6 underlay or fdb for the IPv4 one), the MTU a
// route allows, and admission of decapsulated IPv6 packets (inner source in the sender's IPv6 subnets, destination
// in ours), each failure counted by stage and reason. Nothing here allocates per packet once the FDB's words are cached.
import { type Mac } from '../wire/address';
import { type Cidr6, type IPv6, ipv6Words, prefixMask6, writeIPv6 } from '../wire/address6';
import { IPV6_DESTINATION_OFFSET, IPV6_HEADER_LEN, IPV6_SOURCE_OFFSET, Ipv6UpperLayer, checkIpv6, walkIpv6 } from '../wire/ipv6';
import type { Counters } from './counters';
import type { ForwardingTables, Route6 } from './tables';
import type { LeasedVtep } from './vtep-registry';

/** An IPv6 underlay header is 20 bytes longer than an IPv4 one: the overlay MTU over it is 20 bytes smaller. */
export const IPV6_UNDERLAY_EXTRA = 20;

/** Why a decapsulated IPv6 packet was refused: drop reasons under stage 'inner-ipv6'. */
export type Admission6Problem = 'spoofed-source' | 'not-for-us';

export class Ipv6Path {
  /** Our IPv6 lease's network and mask, as words. */
  private readonly own = new Uint32Array(4);
  private readonly ownMask = new Uint32Array(4);
  /** The cluster IPv6 network's address as bytes: source of Destination Unreachable (never a local address). */
  readonly networkBytes = Buffer.alloc(16);
  /** Scratch for the source of a Packet Too Big: the remote subnet's address (`<subnet>::`), as IPv4 uses its .0. */
  readonly gatewayBytes = Buffer.alloc(16);
  /** Our v6 VTEP address (`<our subnet>::`) as bytes: the target a Neighbor Solicitation must name. */
  readonly vtepBytes = Buffer.alloc(16);
  readonly upper = new Ipv6UpperLayer();
  /** PublicIPv6 -> its words, so a send makes no bigint arithmetic; bounded (cleared when it outgrows fdb6). */
  private readonly wordsOf = new Map<IPv6, Uint32Array>();

  // Result of the latest resolve():
  /** The neighbor's (remote v6 VTEP's) MAC. */
  mac: Mac = 0;
  /** True: send over the IPv6 underlay to `underlay6`; false: over the IPv4 underlay to `underlay4`. */
  overIpv6 = false;
  underlay4 = 0;
  underlay6: Uint32Array = new Uint32Array(4);

  constructor(
    readonly subnet6: Cidr6,
    readonly vtepMac6: Mac,
    network6: Cidr6 | undefined,
    private readonly counters: Counters,
  ) {
    const mask = prefixMask6(subnet6.prefixLength);
    this.own.set(ipv6Words(subnet6.address & mask));
    this.ownMask.set(ipv6Words(mask));
    writeIPv6(this.networkBytes, 0, (network6 ?? subnet6).address);
    writeIPv6(this.vtepBytes, 0, subnet6.address & mask);
  }

  /** Checks an IPv6 packet read from the TUN: header and extension chain. Counts a drop under 'tun-ipv6'. */
  checkOutbound(slab: Buffer, off: number, len: number): boolean {
    const problem = checkIpv6(slab, off, len) ?? walkIpv6(slab, off, this.upper);
    if (problem === undefined) return true;
    this.counters.drops.count('tun-ipv6', problem);
    return false;
  }

  /**
   * Route -> neighbor -> FDB, as the kernel resolves `via <subnet>:: onlink` on flannel-v6.<VNI>: fdb6 first (an IPv6
   * underlay), then fdb (the peer carries IPv6 over IPv4). Sets mac / overIpv6 / underlay4 / underlay6; counts misses.
   */
  resolve(route: Route6, tables: ForwardingTables): boolean {
    const mac = tables.neighbors6.get(route.gateway);
    if (mac === undefined) {
      this.counters.drops.count('neighbor6', 'missing');
      return false;
    }
    this.mac = mac;
    const v6 = tables.fdb6.get(mac);
    if (v6 !== undefined) {
      this.overIpv6 = true;
      let words = this.wordsOf.get(v6);
      if (words === undefined) {
        if (this.wordsOf.size > 2 * tables.fdb6.size + 64) this.wordsOf.clear();
        words = Uint32Array.from(ipv6Words(v6));
        this.wordsOf.set(v6, words);
      }
      this.underlay6 = words;
      return true;
    }
    const v4 = tables.fdb.get(mac);
    if (v4 === undefined) {
      this.counters.drops.count('fdb6', 'missing');
      return false;
    }
    this.overIpv6 = false;
    this.underlay4 = v4;
    return true;
  }

  /** Writes the route's gateway (`<remote subnet>::`) into gatewayBytes: the Packet Too Big source. Rate-limited path. */
  gatewayOf(route: Route6): Buffer {
    writeIPv6(this.gatewayBytes, 0, route.gateway);
    return this.gatewayBytes;
  }

  /**
   * Checks a decapsulated IPv6 packet buf[inner, inner + len) from `sender`: header, chain, inner source in the
   * sender's IPv6 subnets, destination in ours (admission.ts's rules for IPv4). Returns the packet's length (trimming
   * link padding) or -1 with the drop counted under 'inner-ipv6'.
   */
  admit(slab: Buffer, inner: number, len: number, sender: LeasedVtep): number {
    const drops = this.counters.drops;
    const problem = checkIpv6(slab, inner, len) ?? walkIpv6(slab, inner, this.upper);
    if (problem !== undefined) {
      drops.count('inner-ipv6', problem);
      return -1;
    }
    if (!sender.holds6At(slab, inner + IPV6_SOURCE_OFFSET)) {
      drops.count('inner-ipv6', 'spoofed-source');
      return -1;
    }
    if (!this.holdsAt(slab, inner + IPV6_DESTINATION_OFFSET)) {
      drops.count('inner-ipv6', 'not-for-us');
      return -1;
    }
    return IPV6_HEADER_LEN + slab.readUInt16BE(inner + 4);
  }

  /** Whether the address at buf[off, off + 16) lies in our IPv6 lease. */
  holdsAt(buf: Buffer, off: number): boolean {
    const o = this.own;
    const m = this.ownMask;
    return (
      ((buf.readUInt32BE(off) & m[0]) >>> 0) === o[0] &&
      ((buf.readUInt32BE(off + 4) & m[1]) >>> 0) === o[1] &&
      ((buf.readUInt32BE(off + 8) & m[2]) >>> 0) === o[2] &&
      ((buf.readUInt32BE(off + 12) & m[3]) >>> 0) === o[3]
    );
  }
}
