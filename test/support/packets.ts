// Packet builders for tests: real IPv4 packets made with our own emitters.
import { type IPv4, parseIPv4 } from '../../src/wire/address';
import { ICMP_ECHO_REQUEST, ICMP_HEADER_LEN, emitIcmp } from '../../src/wire/icmp';
import { IPV4_HEADER_LEN, IPPROTO_ICMP, IPPROTO_UDP, emitIpv4 } from '../../src/wire/ipv4';
import { UDP_HEADER_LEN, emitUdp } from '../../src/wire/udp';

export const ip = parseIPv4;

/** An ICMP echo request from `source` to `destination` carrying `dataLength` bytes of pattern. */
export function echoRequest(source: IPv4, destination: IPv4, dataLength = 56, options: { dontFragment?: boolean; sequence?: number } = {}): Buffer {
  const icmpLen = ICMP_HEADER_LEN + dataLength;
  const packet = Buffer.alloc(IPV4_HEADER_LEN + icmpLen);
  for (let i = 0; i < dataLength; i++) packet[IPV4_HEADER_LEN + ICMP_HEADER_LEN + i] = i & 0xff;
  emitIcmp({ type: ICMP_ECHO_REQUEST, code: 0, identifier: 0x1234, sequence: options.sequence ?? 1, payloadLength: dataLength }, packet, IPV4_HEADER_LEN);
  emitIpv4(
    { source, destination, protocol: IPPROTO_ICMP, payloadLength: icmpLen, ttl: 64, dontFragment: options.dontFragment ?? true, identification: 7 },
    packet,
    0,
  );
  return packet;
}

/** A UDP datagram of `dataLength` bytes between two ports, with valid checksums. */
export function udpPacket(source: IPv4, destination: IPv4, srcPort: number, dstPort: number, dataLength = 32): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER_LEN + UDP_HEADER_LEN + dataLength);
  emitIpv4({ source, destination, protocol: IPPROTO_UDP, payloadLength: UDP_HEADER_LEN + dataLength, ttl: 64 }, packet, 0);
  emitUdp({ srcPort, dstPort, payloadLength: dataLength, source, destination }, packet, IPV4_HEADER_LEN);
  return packet;
}
