// Writes traced journeys to a pcap Wireshark and tshark open: each packet twice, as the inner IPv4 packet and as
// it travels the underlay (outer IPv4 + UDP + VXLAN frame, or outer IPv4 protocol 4), both as raw IP records.
// IPv6 (issue 12): inner IPv6 packets are raw records as they are; an IPv6 underlay's outer header is IPv6 + UDP.
import { parseIPv4 } from '../wire/address';
import { parseIPv6 } from '../wire/address6';
import { IPV4_HEADER_LEN, IPPROTO_IPIP, writeIpv4Header } from '../wire/ipv4';
import type { Journey } from './journey';
import type { PcapWriter } from './pcap';

export function writeJourney(pcap: PcapWriter, j: Journey): void {
  const timeNs = BigInt(j.timeUs) * 1000n;
  const packet = j.packet === undefined ? undefined : Buffer.from(j.packet, 'base64');
  const frame = j.frame === undefined ? undefined : Buffer.from(j.frame, 'base64');
  const outer = j.outer;
  // Order as on the wire: outbound inner then outer; inbound outer then inner.
  const writeInner = (): void => {
    if (packet !== undefined) pcap.write(packet, 0, packet.length, timeNs);
  };
  const writeOuter = (): void => {
    if (frame === undefined || outer === undefined) return;
    if (outer.src.includes(':')) {
      const ports = { srcPort: outer.dstPort ?? 4789, dstPort: outer.dstPort ?? 4789 };
      pcap.writeUdpDatagram6({ source: parseIPv6(outer.src), destination: parseIPv6(outer.dst), ...ports }, frame, 0, frame.length, timeNs);
      return;
    }
    const src = parseIPv4(outer.src);
    const dst = parseIPv4(outer.dst);
    if (outer.encap === 'vxlan') {
      pcap.writeUdpDatagram({ source: src, destination: dst, srcPort: outer.dstPort ?? 4789, dstPort: outer.dstPort ?? 4789 }, frame, 0, frame.length, timeNs);
    } else if (j.direction === 'inbound') {
      pcap.write(frame, 0, frame.length, timeNs); // a raw receive already holds the outer header
    } else {
      const whole = Buffer.alloc(IPV4_HEADER_LEN + frame.length);
      writeIpv4Header(whole, 0, src, dst, IPPROTO_IPIP, frame.length);
      frame.copy(whole, IPV4_HEADER_LEN);
      pcap.write(whole, 0, whole.length, timeNs);
    }
  };
  if (j.direction === 'outbound') {
    writeInner();
    writeOuter();
  } else {
    writeOuter();
    writeInner();
  }
}
