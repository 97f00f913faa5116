// A packet's journey through the data plane, as `vxtun trace` shows it: what came in, which table entries it hit,
// what was written around it, where it left, or why it was dropped. Built only while someone traces.
import { type IPv4, formatIPv4 } from '../wire/address';
import { IcmpView } from '../wire/icmp';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4View, checkIpv4 } from '../wire/ipv4';
import { TcpView } from '../wire/tcp';
import { UdpView } from '../wire/udp';

export interface PacketSummary {
  src: string;
  dst: string;
  protocol: number;
  length: number;
  ttl: number;
  dontFragment: boolean;
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
  icmpSent?: 'net-unreachable' | 'frag-needed';
  /** Base64 of the inner IPv4 packet and of the underlay payload (VXLAN frame or inner packet), when asked for. */
  packet?: string;
  frame?: string;
}

export interface TraceFilter {
  /** Inner source or destination. */
  host?: IPv4;
  src?: IPv4;
  dst?: IPv4;
  protocol?: number;
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

export function filterMatches(filter: TraceFilter, buf: Buffer, off: number, len: number): boolean {
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
