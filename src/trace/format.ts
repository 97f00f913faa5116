// Journeys as people read them: one headline per packet, then each hop on its own line.
import { IPPROTO_ICMP, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4';
import type { Journey, PacketSummary } from './journey';

const PROTOCOL_NAMES: Record<number, string> = { [IPPROTO_ICMP]: 'ICMP', [IPPROTO_IPIP]: 'IPIP', [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP', 41: 'IPv6', 58: 'ICMPv6', 59: 'no next header' };
const ICMPV6_NAMES: Record<number, string> = {
  1: 'destination unreachable',
  2: 'packet too big',
  3: 'time exceeded',
  4: 'parameter problem',
  128: 'echo request',
  129: 'echo reply',
  135: 'neighbor solicitation',
  136: 'neighbor advertisement',
};
const ICMP_NAMES: Record<number, string> = { 0: 'echo reply', 3: 'destination unreachable', 8: 'echo request', 11: 'time exceeded' };
const TCP_FLAG_NAMES: [number, string][] = [[0x02, 'SYN'], [0x10, 'ACK'], [0x01, 'FIN'], [0x04, 'RST'], [0x08, 'PSH']];

/** An outer address with its UDP port: 192.0.2.12:4789, or tcpdump's 2001:db8:1::12.4789 for IPv6 (as inner ports). */
function hostPort(address: string, port: number | undefined): string {
  return `${address}${address.includes(':') ? '.' : ':'}${port}`;
}

export function describePacket(p: PacketSummary): string {
  const proto = PROTOCOL_NAMES[p.protocol] ?? `proto ${p.protocol}`;
  let what = `${p.src} > ${p.dst} ${proto}`;
  const sep = p.family === 6 ? '.' : ':'; // tcpdump's addr.port for IPv6
  if (p.srcPort !== undefined) what = `${p.src}${sep}${p.srcPort} > ${p.dst}${sep}${p.dstPort} ${proto}`;
  if (p.tcpFlags !== undefined) what += ` [${TCP_FLAG_NAMES.filter(([bit]) => p.tcpFlags! & bit).map(([, n]) => n).join(',')}]`;
  if (p.family === 6) {
    if (p.icmpType !== undefined) what += ` ${ICMPV6_NAMES[p.icmpType] ?? `type ${p.icmpType}`}${p.icmpType === 1 ? ` code ${p.icmpCode}` : ''}`;
    // tcpdump's words for IPv6: "hlim", and an address with a port as addr.port.
    return `${what}, ${p.length} B, hlim ${p.ttl}`;
  }
  if (p.icmpType !== undefined) what += ` ${ICMP_NAMES[p.icmpType] ?? `type ${p.icmpType}`}${p.icmpType === 3 ? ` code ${p.icmpCode}` : ''}`;
  return `${what}, ${p.length} B, ttl ${p.ttl}${p.dontFragment ? ', DF' : ''}`;
}

function clock(timeUs: number): string {
  const date = new Date(Math.floor(timeUs / 1000));
  return `${date.toISOString().slice(11, 19)}.${String(timeUs % 1_000_000).padStart(6, '0')}`;
}

export function formatJourney(j: Journey): string {
  const head = `${clock(j.timeUs)} ${j.direction === 'outbound' ? 'OUT' : 'IN '} ${j.inner ? describePacket(j.inner) : '(no valid inner IP packet)'}`;
  const hops: string[] = [];
  const o = j.outer;
  if (j.direction === 'outbound') {
    hops.push(`read     ${j.from}`);
    if (j.route) hops.push(`route    ${j.route.subnet} via ${j.route.via}${j.route.encap === 'vxlan' ? ' onlink' : ''} (${j.route.encap})`);
    if (j.neighbor) hops.push(`neighbor ${j.neighbor.address} lladdr ${j.neighbor.mac}`);
    if (j.fdb) hops.push(`fdb      ${j.fdb.mac} dst ${j.fdb.dst}`);
    if (o) {
      hops.push(
        o.encap === 'vxlan'
          ? `encap    vxlan vni ${o.vni} | eth ${o.innerSrcMac} > ${o.innerDstMac} | outer udp ${o.src} > ${hostPort(o.dst, o.dstPort)}, ${o.length} B`
          : `encap    ipip | outer ip ${o.src} > ${o.dst} proto 4, ${o.length} B`,
      );
    }
    if (j.via) hops.push(`sent     ${j.via}`);
  } else {
    if (o) {
      hops.push(
        o.encap === 'vxlan'
          ? `received ${j.from} > ${hostPort(o.dst, o.dstPort)} vxlan vni ${o.vni}, ${o.length} B | eth ${o.innerSrcMac} > ${o.innerDstMac}`
          : `received ${j.from} > ${o.dst} ipip, ${o.length} B`,
      );
    } else {
      hops.push(`received ${j.from}`);
    }
    if (j.verdict === 'arp-answered') hops.push(j.inner?.family === 6 || j.outer?.innerDstMac?.startsWith('33:33:') ? 'answered Neighbor Solicitation for our v6 VTEP address' : 'answered ARP request for our VTEP address');
    if (j.via) hops.push(`delivered ${j.via}`);
  }
  if (j.verdict === 'dropped' && j.drop) {
    hops.push(`DROPPED  ${j.drop.stage}/${j.drop.reason}${j.icmpSent ? `; ${j.icmpSent === 'no-route' || j.icmpSent === 'packet-too-big' ? 'ICMPv6' : 'ICMP'} ${j.icmpSent} sent back into the TUN` : ''}`);
  }
  return `${head}\n${hops.map((h) => `    ${h}`).join('\n')}\n`;
}
