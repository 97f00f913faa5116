// A packet's journey through the data plane, as `vxtun trace` shows it: what came in, which table entries it hit,
// what was written around it, where it left, or why it was dropped. Built only while someone traces.
import { type IPv4, formatIPv4 } from '../wire/address';
import { type IPv6, formatIPv6, readIPv6 } from '../wire/address6';
import { IPPROTO_ICMPV6, IPPROTO_TCP6, IPPROTO_UDP6, IPV6_HEADER_LEN, Ipv6UpperLayer, checkIpv6, walkIpv6 } from '../wire/ipv6';
import { IcmpView } from '../wire/icmp';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4View, checkIpv4 } from '../wire/ipv4';
import { TcpView } from '../wire/tcp';
import { UdpView } from '../wire/udp';

export interface PacketSummary {
  src: string;
  dst: string;
  protocol: number;
  length: number;
  /** IPv4 TTL, or the IPv6 hop limit. */
  ttl: number;
  dontFragment: boolean;
  /** 6 for an IPv6 packet (then `protocol` is the upper layer after the extension headers); absent for IPv4. */
  family?: 6;
  srcPort?: number;
  dstPort?: number;
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
}

export interface Journey {
  /** Microseconds since the epoch. */
  timeUs: number;
  direction: 'outbound' | 'inbound';
  verdict: 'sent' | 'delivered' | 'dropped' | 'arp-answered';
  /** The inner IPv4 packet; absent when it was not a valid one. */
  inner?: PacketSummary;
  /** Where it came from: the TUN device, or the underlay sender. */
  from: string;
  route?: { subnet: string; via: string; encap: string };
  neighbor?: { address: string; mac: string };
  fdb?: { mac: string; dst: string };
  outer?: { encap: 'vxlan' | 'ipip'; src: string; dst: string; dstPort?: number; vni?: number; innerSrcMac?: string; innerDstMac?: string; length: number };
  /** Where it left: "udp 192.0.2.11 -> 192.0.2.12:4789, sendmmsg batch of 12" or "tun vxtun0, batch of 3". */
  via?: string;
  drop?: { stage: string; reason: string };
  /** An ICMP error we sent back into the TUN about this packet. */
  icmpSent?: 'net-unreachable' | 'frag-needed' | 'no-route' | 'packet-too-big';
  /** Base64 of the inner IP packet and of the underlay payload (VXLAN frame or inner packet), when asked for. */
  packet?: string;
  frame?: string;
}

export interface TraceFilter {
  /** Inner source or destination. */
  host?: IPv4;
  src?: IPv4;
  dst?: IPv4;
  protocol?: number;
  /** The same for IPv6 inner packets (an IPv6 packet never matches an IPv4 address filter, nor the reverse). */
  host6?: IPv6;
  src6?: IPv6;
  dst6?: IPv6;
}

const ip = new Ipv4View();
const udp = new UdpView();
const tcp = new TcpView();
const icmp = new IcmpView();

export function summarizeIpv4(buf: Buffer, off: number, len: number): PacketSummary | undefined {
  if (checkIpv4(buf, off, len) !== undefined) return undefined;
  ip.wrap(buf, off);
  const summary: PacketSummary = {
    src: formatIPv4(ip.source),
    dst: formatIPv4(ip.destination),
    protocol: ip.protocol,
    length: ip.totalLength,
    ttl: ip.ttl,
    dontFragment: ip.dontFragment,
  };
  const payload = off + ip.headerLength;
  const payloadLen = ip.totalLength - ip.headerLength;
  if (ip.fragmentOffset !== 0) return summary;
  if ((ip.protocol === IPPROTO_UDP && payloadLen >= 8) || (ip.protocol === IPPROTO_TCP && payloadLen >= 20)) {
    const view = ip.protocol === IPPROTO_UDP ? udp.wrap(buf, payload) : tcp.wrap(buf, payload);
    summary.srcPort = view.srcPort;
    summary.dstPort = view.dstPort;
    if (ip.protocol === IPPROTO_TCP) summary.tcpFlags = tcp.flags;
  } else if (ip.protocol === IPPROTO_ICMP && payloadLen >= 8) {
    icmp.wrap(buf, payload);
    summary.icmpType = icmp.type;
    summary.icmpCode = icmp.code;
  }
  return summary;
}

const upper = new Ipv6UpperLayer();

/** Summarizes the IPv4 or IPv6 packet at off, by its version nibble; undefined when it is not a valid one. */
export function summarizePacket(buf: Buffer, off: number, len: number): PacketSummary | undefined {
  return len > 0 && buf[off] >> 4 === 6 ? summarizeIpv6(buf, off, len) : summarizeIpv4(buf, off, len);
}

export function summarizeIpv6(buf: Buffer, off: number, len: number): PacketSummary | undefined {
  if (checkIpv6(buf, off, len) !== undefined || walkIpv6(buf, off, upper) !== undefined) return undefined;
  const payloadLength = buf.readUInt16BE(off + 4);
  const summary: PacketSummary = {
    src: formatIPv6(readIPv6(buf, off + 8)),
    dst: formatIPv6(readIPv6(buf, off + 24)),
    protocol: upper.protocol,
    length: IPV6_HEADER_LEN + payloadLength,
    ttl: buf[off + 7],
    dontFragment: false,
    family: 6,
  };
  if (upper.fragmentOffset !== 0) return summary;
  const at = upper.offset;
  const left = off + IPV6_HEADER_LEN + payloadLength - at;
  if ((upper.protocol === IPPROTO_UDP6 && left >= 8) || (upper.protocol === IPPROTO_TCP6 && left >= 20)) {
    const view = upper.protocol === IPPROTO_UDP6 ? udp.wrap(buf, at) : tcp.wrap(buf, at);
    summary.srcPort = view.srcPort;
    summary.dstPort = view.dstPort;
    if (upper.protocol === IPPROTO_TCP6) summary.tcpFlags = tcp.flags;
  } else if (upper.protocol === IPPROTO_ICMPV6 && left >= 4) {
    summary.icmpType = buf[at];
    summary.icmpCode = buf[at + 1];
  }
  return summary;
}

function filterMatches6(filter: TraceFilter, buf: Buffer, off: number, len: number): boolean {
  if (filter.host !== undefined || filter.src !== undefined || filter.dst !== undefined) return false;
  if (len < IPV6_HEADER_LEN) return filter.host6 === undefined && filter.src6 === undefined && filter.dst6 === undefined && filter.protocol === undefined;
  // Tracing only: a bigint per address is fine here.
  const src = readIPv6(buf, off + 8);
  const dst = readIPv6(buf, off + 24);
  if (filter.host6 !== undefined && src !== filter.host6 && dst !== filter.host6) return false;
  if (filter.src6 !== undefined && src !== filter.src6) return false;
  if (filter.dst6 !== undefined && dst !== filter.dst6) return false;
  if (filter.protocol !== undefined) {
    if (checkIpv6(buf, off, len) !== undefined || walkIpv6(buf, off, upper) !== undefined || upper.protocol !== filter.protocol) return false;
  }
  return true;
}

export function filterMatches(filter: TraceFilter, buf: Buffer, off: number, len: number): boolean {
  if (len > 0 && buf[off] >> 4 === 6) return filterMatches6(filter, buf, off, len);
  if (filter.host6 !== undefined || filter.src6 !== undefined || filter.dst6 !== undefined) return false;
  if (len < 20) return filter.host === undefined && filter.src === undefined && filter.dst === undefined && filter.protocol === undefined;
  ip.wrap(buf, off);
  const src = ip.source;
  const dst = ip.destination;
  if (filter.host !== undefined && src !== filter.host && dst !== filter.host) return false;
  if (filter.src !== undefined && src !== filter.src) return false;
  if (filter.dst !== undefined && dst !== filter.dst) return false;
  if (filter.protocol !== undefined && ip.protocol !== filter.protocol) return false;
  return true;
}
