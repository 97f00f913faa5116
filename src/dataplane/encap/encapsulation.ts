// An encapsulation turns an inner IPv4 packet into an underlay datagram and back. The engine owns the loops, the
// batches and the TUN; an encapsulation owns the outer headers and the checks that belong to them.
import type { PacketBatch } from '../../io/batch';
import type { Cidr, IPv4, Mac } from '../../wire/address';
import type { Cidr6, IPv6 } from '../../wire/address6';
import type { Counters } from '../counters';
import type { EncapName, ForwardingTables, Route } from '../tables';

/** This node's end of the tunnel. */
export interface LocalVtep {
  /** Overlay address of the TUN: the lease's .0, as flannel gives flannel.1. */
  readonly vtepIp: IPv4;
  /** Our lease: decapsulated packets are accepted only for inner destinations inside it (vtepIp included). */
  readonly subnet: Cidr;
  readonly vtepMac: Mac;
  readonly underlayIp: IPv4;
  readonly vni: number;
  /** Destination UDP port of VXLAN datagrams (unused by IP-in-IP). */
  readonly port: number;
  /**
   * Our IPv6 lease (flannel's second subnet, e.g. fd00:10:244:1::/64): without it the engine drops IPv6 packets as
   * "ipv6-not-supported". Our v6 VTEP address is its network address (`<subnet>::`), as flannel-v6.<VNI> is given.
   */
  readonly subnet6?: Cidr6;
  /** MAC of our v6 VTEP (flannel's BackendV6Data.VtepMAC): inner Ethernet source of IPv6 frames, NA target link-layer. */
  readonly vtepMac6?: Mac;
  /** Our PublicIPv6, when we have an IPv6 underlay (traces show it as the outer source). */
  readonly underlayIp6?: IPv6;
}

export interface Encapsulation {
  readonly name: EncapName;
  /** Underlay bytes added to each packet: the overlay MTU is the underlay MTU minus this. */
  readonly overhead: number;
  /** Bytes written in front of the inner packet (the rest, if any, is written by the kernel's socket). */
  readonly headroom: number;
  /** Where the last successful writeHeaders sends to: underlay address and (VXLAN) UDP port. */
  readonly nextHop: IPv4;
  readonly nextHopPort: number;
  /**
   * Resolves `route` to an underlay address (nextHop) and writes the `headroom` bytes that go in front of an inner
   * packet into buf at off: in place before one packet, or once into a template for a TCP super-packet's segments.
   * Returns false when the packet must be dropped (and counted).
   */
  writeHeaders(buf: Buffer, off: number, route: Route, tables: ForwardingTables, counters: Counters): boolean;
  /**
   * Resolves `route` to an underlay address, writes the outer headers in place in front of the packet at `off`,
   * and pushes the datagram onto `out`. Returns false when the packet was dropped (and counted).
   */
  encapsulate(slab: Buffer, off: number, len: number, route: Route, tables: ForwardingTables, out: PacketBatch, counters: Counters): boolean;
  /**
   * Validates a datagram received from `source` and returns the offset of the inner IPv4 packet, or -1 when the
   * datagram was dropped (counted) or consumed here (an ARP request answered onto `replies`). The engine has already
   * checked that `source` holds a lease; the inner addresses are the engine's to check (admission.ts).
   * Pushing onto a full `replies` is refused by the batch: count the drop.
   */
  decapsulate(slab: Buffer, off: number, len: number, source: IPv4, tables: ForwardingTables, replies: PacketBatch, counters: Counters): number;
  /**
   * IPv6 inner packets (issue 12), for encapsulations that carry them: writes the `headroom` bytes in front of an IPv6
   * packet at off + headroom, addressed to the neighbor `destinationMac` (VXLAN: inner Ethernet type 0x86DD from our
   * v6 VTEP MAC). Absent: the engine drops IPv6 for this encapsulation.
   */
  writeHeaders6?(buf: Buffer, off: number, destinationMac: Mac): void;
  /** The inner packet's IP version after the latest successful decapsulate (from the inner Ethernet type); absent: 4. */
  readonly innerFamily?: 4 | 6;
}
