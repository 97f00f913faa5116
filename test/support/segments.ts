// Super-packets and the checks of their segments, for the native segment senders' tests (unit and namespace).
import { IPV4_HEADER_LEN, IPPROTO_TCP, checkIpv4, emitIpv4, parseIpv4 } from '../../src/wire/ipv4';
import { TCP_ACK, TCP_PSH, emitTcp, parseTcp, tcpChecksumValid } from '../../src/wire/tcp';

/** A TSO super-packet as an offload TUN hands it over (one IPv4/TCP header, `payload` bytes, PSH set). */
export function superPacket(payload: number, source: number, destination: number): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER_LEN + 20 + payload);
  for (let i = 0; i < payload; i++) packet[40 + i] = (i * 131 + (i >> 8)) & 0xff;
  emitTcp({ srcPort: 5001, dstPort: 44000, seq: 0xffff0000, ack: 7, flags: TCP_ACK | TCP_PSH, window: 500, payloadLength: payload }, packet, IPV4_HEADER_LEN);
  emitIpv4({ source, destination, protocol: IPPROTO_TCP, payloadLength: 20 + payload, ttl: 64, dontFragment: true, identification: 0xfffe }, packet, 0);
  return packet;
}

/**
 * The problems of the received segments against the super-packet they came from; with `outer` each starts with the
 * outer IPv4 header of IP-in-IP (a raw receive), else with the segment itself (sent as a UDP payload).
 */
export function checkSegments(received: Buffer[], original: Buffer, mss: number, outer = true): { problems: string[]; payloadMatches: boolean } {
  const problems: string[] = [];
  const payloads: Buffer[] = [];
  let seq = 0xffff0000;
  received.forEach((d, i) => {
    const inner = outer ? (d[0] & 15) * 4 : 0;
    if (outer && d[9] !== 4) problems.push(`segment ${i}: outer protocol ${d[9]}`);
    if (checkIpv4(d, inner, d.length - inner) !== undefined) problems.push(`segment ${i}: inner IPv4 ${checkIpv4(d, inner, d.length - inner)}`);
    if (!tcpChecksumValid(d, inner)) problems.push(`segment ${i}: TCP checksum`);
    const ip = parseIpv4(d, inner);
    if (ip.identification !== ((0xfffe + i) & 0xffff)) problems.push(`segment ${i}: IPv4 ID ${ip.identification}`);
    const tcp = parseTcp(d, inner + 20, ip.payloadLength);
    if (tcp.seq !== seq >>> 0) problems.push(`segment ${i}: seq ${tcp.seq}`);
    if (((tcp.flags & TCP_PSH) !== 0) !== (i === received.length - 1)) problems.push(`segment ${i}: PSH`);
    const payload = d.subarray(inner + 40);
    if (i < received.length - 1 && payload.length !== mss) problems.push(`segment ${i}: ${payload.length} bytes, not the MSS`);
    seq += payload.length;
    payloads.push(payload);
  });
  return { problems, payloadMatches: Buffer.concat(payloads).equals(original.subarray(40)) };
}

