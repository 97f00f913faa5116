// VXLAN (RFC 7348) over a UDP socket: we write the 8-byte VXLAN header and the inner Ethernet header into the
// headroom; the kernel adds UDP and the outer IPv4 header. Inbound (after the engine checked that the sender holds a
// lease, Calico's allowlist) we check the I flag, the VNI, that the inner source MAC is not our own (a loop, as the
// Linux vxlan driver drops in vxlan_rcv / vxlan_set_mac) and the inner destination MAC, and answer ARP for our VTEP
// address, as a kernel vxlan device with `proxy` would, for peers that ask instead of using permanent neighbor entries.
// IPv6 (issue 12): inner Ethernet type 0x86DD between v6 VTEP MACs (flannel-v6.<VNI>), and Neighbor Solicitations
// for our v6 VTEP address (`<our v6 subnet>::`) answered with an Advertisement, as ARP is for IPv4.
import type { PacketBatch } from '../../io/batch';
import { type IPv4, type Mac, BROADCAST_MAC } from '../../wire/address';
import { ARP_REPLY, ARP_REQUEST, ArpView, checkArp } from '../../wire/arp';
import { writeIPv6 } from '../../wire/address6';
import { ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetView } from '../../wire/ethernet';
import { ICMPV6_NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT_LEN, answerNeighborSolicitation, checkNeighborSolicitation } from '../../wire/icmpv6';
import { IPPROTO_ICMPV6, IPV6_HEADER_LEN } from '../../wire/ipv6';
import { VXLAN_HEADER_LEN, VXLAN_OVERHEAD, VxlanView, checkVxlan, writeVxlanHeader } from '../../wire/vxlan';
import type { Counters } from '../counters';
import type { ForwardingTables, Route } from '../tables';
import type { Encapsulation, LocalVtep } from './encapsulation';

const ENCAP_LEN = VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN;

export class VxlanEncapsulation implements Encapsulation {
  readonly name = 'vxlan' as const;
  readonly overhead = VXLAN_OVERHEAD;
  readonly headroom = ENCAP_LEN;
  private readonly ethernet = new EthernetView();
  private readonly vxlan = new VxlanView();
  private readonly arp = new ArpView();

  /** Our v6 VTEP address as bytes (`<our v6 subnet>::`), when we have an IPv6 lease. */
  private readonly vtepAddress6: Buffer | undefined;
  innerFamily: 4 | 6 = 4;

  constructor(private readonly local: LocalVtep) {
    if (local.subnet6 !== undefined) {
      this.vtepAddress6 = Buffer.alloc(16);
      writeIPv6(this.vtepAddress6, 0, local.subnet6.address);
    }
  }

  nextHop = 0;
  nextHopPort = 0;

  writeHeaders6(buf: Buffer, off: number, destinationMac: Mac): void {
    writeVxlanHeader(buf, off, this.local.vni);
    const eth = this.ethernet.wrap(buf, off + VXLAN_HEADER_LEN);
    eth.destination = destinationMac;
    eth.source = this.local.vtepMac6 ?? this.local.vtepMac;
    eth.etherType = ETHERTYPE_IPV6;
  }

  writeHeaders(buf: Buffer, off: number, route: Route, tables: ForwardingTables, counters: Counters): boolean {
    const mac = tables.neighbors.get(route.gateway);
    if (mac === undefined) {
      counters.drops.count('neighbor', 'missing');
      return false;
    }
    const underlayIp = tables.fdb.get(mac);
    if (underlayIp === undefined) {
      counters.drops.count('fdb', 'missing');
      return false;
    }
    writeVxlanHeader(buf, off, this.local.vni);
    const eth = this.ethernet.wrap(buf, off + VXLAN_HEADER_LEN);
    eth.destination = mac;
    eth.source = this.local.vtepMac;
    eth.etherType = ETHERTYPE_IPV4;
    this.nextHop = underlayIp;
    this.nextHopPort = this.local.port;
    return true;
  }

  encapsulate(slab: Buffer, off: number, len: number, route: Route, tables: ForwardingTables, out: PacketBatch, counters: Counters): boolean {
    const start = off - ENCAP_LEN;
    if (!this.writeHeaders(slab, start, route, tables, counters)) return false;
    if (out.push(start, len + ENCAP_LEN, this.nextHop, this.nextHopPort)) return true;
    counters.drops.count('underlay', 'batch-full');
    return false;
  }

  decapsulate(slab: Buffer, off: number, len: number, source: IPv4, _tables: ForwardingTables, replies: PacketBatch, counters: Counters): number {
    const problem = checkVxlan(slab, off, len);
    if (problem !== undefined) {
      counters.drops.count('vxlan', problem);
      return -1;
    }
    if (this.vxlan.wrap(slab, off).vni !== this.local.vni) {
      counters.drops.count('vxlan', 'wrong-vni');
      return -1;
    }
    const ethOff = off + VXLAN_HEADER_LEN;
    if (len < ENCAP_LEN) {
      counters.drops.count('ethernet', 'truncated');
      return -1;
    }
    const eth = this.ethernet.wrap(slab, ethOff);
    const srcMac = eth.source;
    if (srcMac === this.local.vtepMac || srcMac === this.local.vtepMac6) {
      // Our own frame came back (a loop in the underlay, or a peer forging our MAC).
      counters.drops.count('ethernet', 'loop');
      return -1;
    }
    const etherType = eth.etherType;
    if (etherType === ETHERTYPE_IPV4) {
      if (eth.destination !== this.local.vtepMac) {
        counters.drops.count('ethernet', 'not-our-mac');
        return -1;
      }
      this.innerFamily = 4;
      return ethOff + ETHERNET_HEADER_LEN;
    }
    if (etherType === ETHERTYPE_IPV6 && this.local.vtepMac6 !== undefined) {
      const ipOff = ethOff + ETHERNET_HEADER_LEN;
      const ipLen = len - ENCAP_LEN;
      // A Neighbor Solicitation comes to a multicast MAC (33:33:ff:..) or, probing, to ours; no extension headers.
      if (ipLen >= IPV6_HEADER_LEN + 1 && slab[ipOff + 6] === IPPROTO_ICMPV6 && slab[ipOff + IPV6_HEADER_LEN] === ICMPV6_NEIGHBOR_SOLICITATION) {
        this.answerNeighborSolicitation(slab, off, len, source, replies, counters);
        return -1;
      }
      if (eth.destination !== this.local.vtepMac6) {
        counters.drops.count('ethernet', 'not-our-mac');
        return -1;
      }
      this.innerFamily = 6;
      return ipOff;
    }
    if (etherType === ETHERTYPE_ARP) {
      this.answerArp(slab, off, len, source, replies, counters);
      return -1;
    }
    counters.drops.count('ethernet', 'unsupported-ethertype');
    return -1;
  }

  /**
   * Turns a Neighbor Solicitation for our v6 VTEP address into the Advertisement, in place (RFC 4861 7.2.4), and
   * queues it back to the asker. The frame keeps its length budget: the target link-layer option is written when the
   * datagram has room for it (a solicitation with a source link-layer option always has), as a GRO buffer's next
   * datagram follows right after.
   */
  private answerNeighborSolicitation(slab: Buffer, off: number, len: number, source: IPv4, replies: PacketBatch, counters: Counters): void {
    const eth = this.ethernet.wrap(slab, off + VXLAN_HEADER_LEN);
    const ipOff = off + ENCAP_LEN;
    const ipLen = len - ENCAP_LEN;
    const payloadLen = slab.readUInt16BE(ipOff + 4);
    if (IPV6_HEADER_LEN + payloadLen > ipLen) {
      counters.drops.count('ndp', 'truncated');
      return;
    }
    const problem = checkNeighborSolicitation(slab, ipOff, ipOff + IPV6_HEADER_LEN, payloadLen);
    if (typeof problem === 'string') {
      counters.drops.count('ndp', problem);
      return;
    }
    const destination = eth.destination;
    const multicast = Math.floor(destination / 0x100000000) === 0x3333;
    const target = this.vtepAddress6!;
    const t = ipOff + IPV6_HEADER_LEN + 8;
    if (
      slab.readUInt32BE(t) !== target.readUInt32BE(0) ||
      slab.readUInt32BE(t + 4) !== target.readUInt32BE(4) ||
      slab.readUInt32BE(t + 8) !== target.readUInt32BE(8) ||
      slab.readUInt32BE(t + 12) !== target.readUInt32BE(12) ||
      (!multicast && destination !== this.local.vtepMac6)
    ) {
      counters.drops.count('ndp', 'not-for-us');
      return;
    }
    if (replies.full) {
      counters.drops.count('ndp', 'reply-batch-full');
      return;
    }
    const askerMac = eth.source;
    const withOption = ipLen >= NEIGHBOR_ADVERTISEMENT_LEN;
    const replyLen = answerNeighborSolicitation(slab, ipOff, this.local.vtepMac6!, withOption);
    eth.destination = askerMac;
    eth.source = this.local.vtepMac6!;
    counters.neighborAdvertisements++;
    replies.push(off, ENCAP_LEN + replyLen, source, this.local.port);
  }

  /** Turns an ARP request for our VTEP address into the reply, in place, and queues it back to the asker. */
  private answerArp(slab: Buffer, off: number, len: number, source: IPv4, replies: PacketBatch, counters: Counters): void {
    const arpOff = off + ENCAP_LEN;
    const problem = checkArp(slab, arpOff, len - ENCAP_LEN);
    if (problem !== undefined) {
      counters.drops.count('arp', problem);
      return;
    }
    const eth = this.ethernet.wrap(slab, off + VXLAN_HEADER_LEN);
    const arp = this.arp.wrap(slab, arpOff);
    if (arp.operation !== ARP_REQUEST) {
      counters.drops.count('arp', 'not-a-request');
      return;
    }
    if (arp.targetIp !== this.local.vtepIp || (eth.destination !== BROADCAST_MAC && eth.destination !== this.local.vtepMac)) {
      counters.drops.count('arp', 'not-for-us');
      return;
    }
    if (replies.full) {
      counters.drops.count('arp', 'reply-batch-full');
      return;
    }
    const askerMac = arp.senderMac;
    const askerIp = arp.senderIp;
    arp.operation = ARP_REPLY;
    arp.targetMac = askerMac;
    arp.targetIp = askerIp;
    arp.senderMac = this.local.vtepMac;
    arp.senderIp = this.local.vtepIp;
    eth.destination = askerMac;
    eth.source = this.local.vtepMac;
    counters.arpReplies++;
    // The reply reuses the request's slot: the engine releases slots only after the replies are sent.
    replies.push(off, len, source, this.local.port);
  }
}
