// Builds the journeys of traced packets from what the engine decided. Runs only while a tracer is attached, so it
// may allocate; the engine's untraced path never calls it.
import type { PacketBatch } from '../io/batch';
import type { Journey } from '../trace/journey';
import { summarizeIpv4, summarizeIpv6 } from '../trace/journey';
import { type IPv4, formatCidr, formatIPv4, formatMac } from '../wire/address';
import { type IPv6, formatCidr6, formatIPv6, ipv6FromWords } from '../wire/address6';
import { ETHERNET_HEADER_LEN, EthernetView } from '../wire/ethernet';
import { Ipv4View } from '../wire/ipv4';
import { VXLAN_HEADER_LEN, VxlanView } from '../wire/vxlan';
import type { DropCounters } from './counters';
import type { LocalVtep } from './encap';
import type { EncapName, ForwardingTables, Route, Route6 } from './tables';

/** Pending journeys of the IPv6 underlay's send batch carry its index plus this (finish tells the two batches apart). */
export const BATCH6_INDEX = 1 << 20;

/** What an attached tracer offers the engine. */
export interface PacketTracer {
  /** Whether anyone wants the packet whose inner IPv4 header is at off (filters by address and protocol). */
  wants(buf: Buffer, off: number, len: number): boolean;
  /** Whether journeys should carry the packet bytes (for pcap). */
  readonly withBytes: boolean;
  record(journey: Journey): void;
}

const ethernet = new EthernetView();
const vxlan = new VxlanView();
const ipv4 = new Ipv4View();

/** An underlay address of either family: IPv4 (number) or IPv6 (bigint). */
function formatUnderlay(address: IPv4 | IPv6): string {
  return typeof address === 'bigint' ? formatIPv6(address) : formatIPv4(address);
}

function base64(slab: Buffer, off: number, len: number): string {
  return slab.toString('base64', off, off + len);
}

/** A pending journey of this batch, with the slot it occupies in the batch that has yet to be sent or written. */
export interface PendingJourney {
  journey: Journey;
  batchIndex: number;
}

export class JourneyBuilder {
  constructor(
    private readonly encap: EncapName,
    private readonly local: LocalVtep,
    private readonly tunName: string,
    private readonly drops: DropCounters,
  ) {}

  outbound(
    slab: Buffer,
    off: number,
    len: number,
    tables: ForwardingTables,
    send: PacketBatch,
    sentBefore: number,
    icmpSent: boolean,
    withBytes: boolean,
  ): PendingJourney {
    const journey: Journey = {
      timeUs: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000),
      direction: 'outbound',
      verdict: 'dropped',
      inner: summarizeIpv4(slab, off, len),
      from: `tun ${this.tunName}`,
    };
    if (withBytes) journey.packet = base64(slab, off, len);
    if (send.count === sentBefore) {
      journey.drop = { stage: this.drops.lastStage, reason: this.drops.lastReason };
      if (icmpSent) journey.icmpSent = journey.drop.stage === 'mtu' ? 'frag-needed' : 'net-unreachable';
      return { journey, batchIndex: -1 };
    }
    const i = send.count - 1;
    const route = tables.routes.lookup(ipv4.wrap(slab, off).destination)!;
    journey.verdict = 'sent';
    journey.route = { subnet: formatCidr(route.subnet), via: formatIPv4(route.gateway), encap: route.encap };
    const frameOff = send.offsets[i];
    const frameLen = send.lengths[i];
    const dst = send.addrs[i];
    journey.outer = { encap: this.encap, src: formatIPv4(this.local.underlayIp), dst: formatIPv4(dst), length: frameLen + (this.encap === 'vxlan' ? 28 : 20) };
    if (this.encap === 'vxlan') {
      const mac = tables.neighbors.get(route.gateway)!;
      journey.neighbor = { address: formatIPv4(route.gateway), mac: formatMac(mac) };
      journey.fdb = { mac: formatMac(mac), dst: formatIPv4(dst) };
      ethernet.wrap(slab, frameOff + VXLAN_HEADER_LEN);
      Object.assign(journey.outer, {
        dstPort: send.ports[i],
        vni: vxlan.wrap(slab, frameOff).vni,
        innerSrcMac: formatMac(ethernet.source),
        innerDstMac: formatMac(ethernet.destination),
      });
    }
    if (withBytes) journey.frame = base64(slab, frameOff, frameLen);
    return { journey, batchIndex: i };
  }

  /** An IPv6 packet from the TUN: sent on `send` (IPv4 underlay) or `send6` (IPv6 underlay), or dropped. */
  outbound6(
    slab: Buffer,
    off: number,
    len: number,
    tables: ForwardingTables,
    send: PacketBatch,
    sentBefore: number,
    send6: PacketBatch,
    sent6Before: number,
    icmpSent: boolean,
    withBytes: boolean,
  ): PendingJourney {
    const journey: Journey = {
      timeUs: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000),
      direction: 'outbound',
      verdict: 'dropped',
      inner: summarizeIpv6(slab, off, len),
      from: `tun ${this.tunName}`,
    };
    if (withBytes) journey.packet = base64(slab, off, len);
    const over6 = send6.count > sent6Before;
    if (send.count === sentBefore && !over6) {
      journey.drop = { stage: this.drops.lastStage, reason: this.drops.lastReason };
      if (icmpSent) journey.icmpSent = journey.drop.stage === 'mtu' ? 'packet-too-big' : 'no-route';
      return { journey, batchIndex: -1 };
    }
    const batch = over6 ? send6 : send;
    const i = batch.count - 1;
    const route = tables.routes6.lookupAt(slab, off + 24)!;
    journey.verdict = 'sent';
    journey.route = { subnet: formatCidr6(route.subnet), via: formatIPv6(route.gateway), encap: route.encap };
    const mac = tables.neighbors6.get(route.gateway)!;
    const frameOff = batch.offsets[i];
    const frameLen = batch.lengths[i];
    const a = batch.addrs6;
    const dst = over6 ? formatIPv6(ipv6FromWords(a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3])) : formatIPv4(batch.addrs[i]);
    journey.neighbor = { address: formatIPv6(route.gateway), mac: formatMac(mac) };
    journey.fdb = { mac: formatMac(mac), dst };
    ethernet.wrap(slab, frameOff + VXLAN_HEADER_LEN);
    journey.outer = {
      encap: 'vxlan',
      src: over6 ? formatIPv6(this.local.underlayIp6 ?? 0n) : formatIPv4(this.local.underlayIp),
      dst,
      dstPort: batch.ports[i],
      vni: vxlan.wrap(slab, frameOff).vni,
      innerSrcMac: formatMac(ethernet.source),
      innerDstMac: formatMac(ethernet.destination),
      length: frameLen + (over6 ? 48 : 28),
    };
    if (withBytes) journey.frame = base64(slab, frameOff, frameLen);
    return { journey, batchIndex: over6 ? BATCH6_INDEX + i : i };
  }

  inbound(slab: Buffer, off: number, len: number, source: IPv4 | IPv6, inner: number, toTun: PacketBatch, queuedBefore: number, arpAnswered: boolean, withBytes: boolean): PendingJourney {
    const journey: Journey = {
      timeUs: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000),
      direction: 'inbound',
      verdict: 'dropped',
      from: `underlay ${formatUnderlay(source)}`,
    };
    if (withBytes) journey.frame = base64(slab, off, len);
    if (this.encap === 'vxlan' && len >= VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN) {
      ethernet.wrap(slab, off + VXLAN_HEADER_LEN);
      journey.outer = {
        encap: 'vxlan',
        src: formatUnderlay(source),
        dst: typeof source === 'bigint' ? formatUnderlay(this.local.underlayIp6 ?? 0n) : formatIPv4(this.local.underlayIp),
        dstPort: this.local.port,
        vni: vxlan.wrap(slab, off).vni,
        innerSrcMac: formatMac(ethernet.source),
        innerDstMac: formatMac(ethernet.destination),
        length: len + (typeof source === 'bigint' ? 48 : 28),
      };
    } else if (this.encap === 'ipip') {
      journey.outer = { encap: 'ipip', src: formatUnderlay(source), dst: formatIPv4(this.local.underlayIp), length: len };
    }
    if (arpAnswered) {
      journey.verdict = 'arp-answered';
      return { journey, batchIndex: -1 };
    }
    if (inner >= 0) journey.inner = slab[inner] >> 4 === 6 ? summarizeIpv6(slab, inner, off + len - inner) : summarizeIpv4(slab, inner, off + len - inner);
    if (toTun.count === queuedBefore) {
      journey.drop = { stage: this.drops.lastStage, reason: this.drops.lastReason };
      return { journey, batchIndex: -1 };
    }
    const i = toTun.count - 1;
    journey.verdict = 'delivered';
    if (withBytes) journey.packet = base64(slab, toTun.offsets[i], toTun.lengths[i]);
    return { journey, batchIndex: i };
  }

  /** A TCP super-packet from an offload TUN, segmented and sent at once (its journey is complete here). */
  superPacket(slab: Buffer, pkt: number, pktLen: number, route: Route, tables: ForwardingTables, segmentsSent: number, via: string, withBytes: boolean): Journey {
    const journey: Journey = {
      timeUs: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000),
      direction: 'outbound',
      verdict: segmentsSent > 0 ? 'sent' : 'dropped',
      inner: summarizeIpv4(slab, pkt, pktLen),
      from: `tun ${this.tunName} (TSO super-packet)`,
      route: { subnet: formatCidr(route.subnet), via: formatIPv4(route.gateway), encap: route.encap },
    };
    if (withBytes) journey.packet = base64(slab, pkt, pktLen);
    if (segmentsSent === 0) {
      journey.drop = { stage: this.drops.lastStage, reason: this.drops.lastReason };
      return journey;
    }
    const mac = tables.neighbors.get(route.gateway);
    if (mac !== undefined) {
      journey.neighbor = { address: formatIPv4(route.gateway), mac: formatMac(mac) };
      const dst = tables.fdb.get(mac);
      if (dst !== undefined) journey.fdb = { mac: formatMac(mac), dst: formatIPv4(dst) };
    }
    journey.via = via;
    return journey;
  }

  /** A TCP/IPv6 super-packet (TSO6) from an offload TUN, segmented and sent at once. */
  superPacket6(slab: Buffer, pkt: number, pktLen: number, route: Route6, tables: ForwardingTables, segmentsSent: number, via: string, withBytes: boolean): Journey {
    const journey: Journey = {
      timeUs: Math.round(performance.timeOrigin * 1000 + performance.now() * 1000),
      direction: 'outbound',
      verdict: segmentsSent > 0 ? 'sent' : 'dropped',
      inner: summarizeIpv6(slab, pkt, pktLen),
      from: `tun ${this.tunName} (TSO6 super-packet)`,
      route: { subnet: formatCidr6(route.subnet), via: formatIPv6(route.gateway), encap: route.encap },
    };
    if (withBytes) journey.packet = base64(slab, pkt, pktLen);
    if (segmentsSent === 0) {
      journey.drop = { stage: this.drops.lastStage, reason: this.drops.lastReason };
      return journey;
    }
    const mac = tables.neighbors6.get(route.gateway);
    if (mac !== undefined) {
      journey.neighbor = { address: formatIPv6(route.gateway), mac: formatMac(mac) };
      const dst6 = tables.fdb6.get(mac);
      const dst = dst6 !== undefined ? formatIPv6(dst6) : tables.fdb.has(mac) ? formatIPv4(tables.fdb.get(mac)!) : undefined;
      if (dst !== undefined) journey.fdb = { mac: formatMac(mac), dst };
    }
    journey.via = via;
    return journey;
  }

  /**
   * Settles a batch's journeys once it is known how many of the batch the kernel took. `batchSize6`: the size of the
   * IPv6 underlay socket's batch, for journeys at BATCH6_INDEX and above (else `batchSize` for every journey).
   */
  finish(pending: PendingJourney[], accepted: (batchIndex: number) => boolean, batchSize: number, where: string, tracer: PacketTracer, batchSize6?: number): void {
    for (const { journey, batchIndex } of pending) {
      if (batchIndex >= 0) {
        const size = batchIndex >= BATCH6_INDEX && batchSize6 !== undefined ? batchSize6 : batchSize;
        if (accepted(batchIndex)) journey.via = `${where}, batch of ${size}`;
        else {
          journey.verdict = 'dropped';
          journey.drop = journey.direction === 'outbound' ? { stage: 'underlay', reason: 'send-failed' } : { stage: 'tun', reason: 'write-failed' };
        }
      }
      tracer.record(journey);
    }
    pending.length = 0;
  }
}
