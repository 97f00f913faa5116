// A classic libpcap file writer (magic 0xa1b2c3d4, version 2.4, microsecond timestamps), readable by tcpdump and
// Wireshark. Records are appended to one chunk and flushed when it fills or on close: no syscall per packet.
// The agent sees VXLAN as UDP payloads (the socket hides the outer headers), so `writeUdpDatagram` synthesizes
// the outer IPv4/UDP header that was, or will be, on the wire; `writeUdpDatagram6` the outer IPv6/UDP one for an
// IPv6 underlay (issue 12). LINKTYPE_RAW records hold either version: readers look at the version nibble.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { IPv4 } from '../wire/address';
import type { IPv6 } from '../wire/address6';
import { foldChecksum, onesComplementSum, pseudoHeaderSum, pseudoHeaderSum6 } from '../wire/checksum';
import { IPV6_HEADER_LEN, emitIpv6 } from '../wire/ipv6';
import { IPPROTO_UDP, IPV4_HEADER_LEN, writeIpv4Header } from '../wire/ipv4';
import { UDP_HEADER_LEN, UdpView } from '../wire/udp';

const F = {
  // global header
  MAGIC: 0,
  VERSION_MAJOR: 4,
  VERSION_MINOR: 6,
  THISZONE: 8,
  SIGFIGS: 12,
  SNAPLEN: 16,
  LINKTYPE: 20,
  GLOBAL_END: 24,
  // record header, relative to the record
  TS_SEC: 0,
  TS_USEC: 4,
  INCL_LEN: 8,
  ORIG_LEN: 12,
  RECORD_END: 16,
} as const;

export const PCAP_GLOBAL_HEADER_LEN = F.GLOBAL_END;
export const PCAP_RECORD_HEADER_LEN = F.RECORD_END;
export const PCAP_HEADER_LEN = PCAP_GLOBAL_HEADER_LEN;
export const PCAP_MAGIC = 0xa1b2c3d4;
/** Bare IPv4/IPv6 packets, as read from a TUN device. */
export const LINKTYPE_RAW = 101;
export const LINKTYPE_ETHERNET = 1;
export const OUTER_IPV4_UDP_LEN = IPV4_HEADER_LEN + UDP_HEADER_LEN;

const CHUNK_SIZE = 256 * 1024;
// libpcap's default; room for 64 KB offload super-packets.
const DEFAULT_SNAPLEN = 262144;

export interface OuterIpv4Udp {
  source: IPv4;
  destination: IPv4;
  srcPort: number;
  dstPort: number;
  ttl?: number;
}

const udpView = new UdpView();

/**
 * Writes a 28-byte outer IPv4 + UDP header at off for a UDP payload of payloadLength bytes, IPv4 checksum filled,
 * UDP checksum 0 (none, allowed over IPv4). Returns 28.
 */
export function buildOuterIpv4Udp(outer: OuterIpv4Udp, payloadLength: number, buf: Buffer, off: number): number {
  writeIpv4Header(buf, off, outer.source, outer.destination, IPPROTO_UDP, UDP_HEADER_LEN + payloadLength, outer.ttl ?? 64);
  const udp = udpView.wrap(buf, off + IPV4_HEADER_LEN);
  udp.srcPort = outer.srcPort;
  udp.dstPort = outer.dstPort;
  udp.length = UDP_HEADER_LEN + payloadLength;
  udp.checksum = 0;
  return OUTER_IPV4_UDP_LEN;
}

export const OUTER_IPV6_UDP_LEN = IPV6_HEADER_LEN + UDP_HEADER_LEN;

export interface OuterIpv6Udp {
  source: IPv6;
  destination: IPv6;
  srcPort: number;
  dstPort: number;
  hopLimit?: number;
}

/**
 * Writes a 48-byte outer IPv6 + UDP header at off for the UDP payload payload[payloadOff, +payloadLength), with the
 * UDP checksum computed: over IPv6 it is mandatory (RFC 8200 8.1; 0 is sent as 0xffff). Returns 48.
 */
export function buildOuterIpv6Udp(outer: OuterIpv6Udp, payload: Buffer, payloadOff: number, payloadLength: number, buf: Buffer, off: number): number {
  const udpLength = UDP_HEADER_LEN + payloadLength;
  emitIpv6({ source: outer.source, destination: outer.destination, nextHeader: IPPROTO_UDP, payloadLength: udpLength, hopLimit: outer.hopLimit ?? 64 }, buf, off);
  const udp = udpView.wrap(buf, off + IPV6_HEADER_LEN);
  udp.srcPort = outer.srcPort;
  udp.dstPort = outer.dstPort;
  udp.length = udpLength;
  udp.checksum = 0;
  let sum = pseudoHeaderSum6(buf, off + 8, off + 24, udpLength, IPPROTO_UDP);
  sum = onesComplementSum(buf, off + IPV6_HEADER_LEN, off + OUTER_IPV6_UDP_LEN, sum);
  const checksum = foldChecksum(onesComplementSum(payload, payloadOff, payloadOff + payloadLength, sum));
  udp.checksum = checksum === 0 ? 0xffff : checksum;
  return OUTER_IPV6_UDP_LEN;
}

export class PcapWriter {
  readonly path: string;
  readonly linkType: number;
  readonly snapLen: number;
  private fd: number;
  private readonly chunk: Buffer;
  private used = 0;
  private readonly scratch = Buffer.alloc(OUTER_IPV6_UDP_LEN);
  /** Records written so far. */
  packets = 0;

  private constructor(path: string, fd: number, linkType: number, snapLen: number) {
    this.path = path;
    this.fd = fd;
    this.linkType = linkType;
    this.snapLen = snapLen;
    this.chunk = Buffer.alloc(CHUNK_SIZE);
  }

  /** Creates (or truncates) the file; the global header goes out with the first flush. */
  static open(path: string, linkType = LINKTYPE_RAW, snapLen = DEFAULT_SNAPLEN): PcapWriter {
    const writer = new PcapWriter(path, openSync(path, 'w'), linkType, snapLen);
    const h = writer.chunk;
    h.writeUInt32LE(PCAP_MAGIC, F.MAGIC); // little-endian; readers detect the byte order from the magic
    h.writeUInt16LE(2, F.VERSION_MAJOR);
    h.writeUInt16LE(4, F.VERSION_MINOR);
    h.writeInt32LE(0, F.THISZONE);
    h.writeUInt32LE(0, F.SIGFIGS);
    h.writeUInt32LE(snapLen, F.SNAPLEN);
    h.writeUInt32LE(linkType, F.LINKTYPE);
    writer.used = F.GLOBAL_END;
    return writer;
  }

  /** Appends buf[off, off + len) as one packet, cut to snapLen. timestampNs: Unix time in ns (default: now). */
  write(buf: Buffer, off: number, len: number, timestampNs?: number | bigint): void {
    const included = Math.min(len, this.snapLen);
    this.writeRecordHeader(included, len, timestampNs);
    this.append(buf, off, included);
    this.packets++;
  }

  /**
   * Appends a UDP datagram as the underlay carried it: a synthesized outer IPv4/UDP header, then
   * payload[off, off + len) (for VXLAN: the VXLAN header and inner frame). The UDP checksum is computed.
   * For LINKTYPE_RAW files.
   */
  writeUdpDatagram(outer: OuterIpv4Udp, payload: Buffer, off: number, len: number, timestampNs?: number | bigint): void {
    const head = this.scratch;
    buildOuterIpv4Udp(outer, len, head, 0);
    let sum = pseudoHeaderSum(outer.source, outer.destination, IPPROTO_UDP, UDP_HEADER_LEN + len);
    sum = onesComplementSum(head, IPV4_HEADER_LEN, OUTER_IPV4_UDP_LEN, sum);
    const checksum = foldChecksum(onesComplementSum(payload, off, off + len, sum));
    udpView.wrap(head, IPV4_HEADER_LEN).checksum = checksum === 0 ? 0xffff : checksum;

    const total = OUTER_IPV4_UDP_LEN + len;
    const included = Math.min(total, this.snapLen);
    this.writeRecordHeader(included, total, timestampNs);
    const headPart = Math.min(included, OUTER_IPV4_UDP_LEN);
    this.append(head, 0, headPart);
    this.append(payload, off, included - headPart);
    this.packets++;
  }

  /** As writeUdpDatagram, over an IPv6 underlay: a synthesized outer IPv6/UDP header, then the payload. */
  writeUdpDatagram6(outer: OuterIpv6Udp, payload: Buffer, off: number, len: number, timestampNs?: number | bigint): void {
    const head = this.scratch;
    buildOuterIpv6Udp(outer, payload, off, len, head, 0);
    const total = OUTER_IPV6_UDP_LEN + len;
    const included = Math.min(total, this.snapLen);
    this.writeRecordHeader(included, total, timestampNs);
    const headPart = Math.min(included, OUTER_IPV6_UDP_LEN);
    this.append(head, 0, headPart);
    this.append(payload, off, included - headPart);
    this.packets++;
  }

  /** Writes buffered records to the file. */
  flush(): void {
    let done = 0;
    while (done < this.used) done += writeSync(this.fd, this.chunk, done, this.used - done);
    this.used = 0;
  }

  close(): void {
    if (this.fd < 0) return;
    this.flush();
    closeSync(this.fd);
    this.fd = -1;
  }

  private writeRecordHeader(included: number, original: number, timestampNs?: number | bigint): void {
    if (this.fd < 0) throw new Error(`pcap ${this.path}: write after close`);
    let seconds: number;
    let micros: number;
    if (timestampNs === undefined) {
      const ms = performance.timeOrigin + performance.now();
      seconds = Math.floor(ms / 1000);
      micros = Math.floor((ms - seconds * 1000) * 1000);
    } else if (typeof timestampNs === 'bigint') {
      seconds = Number(timestampNs / 1_000_000_000n);
      micros = Number((timestampNs % 1_000_000_000n) / 1000n);
    } else {
      seconds = Math.floor(timestampNs / 1e9);
      micros = Math.floor((timestampNs - seconds * 1e9) / 1000);
    }
    if (micros > 999_999) micros = 999_999; // float rounding at the second boundary
    if (this.used + F.RECORD_END > this.chunk.length) this.flush();
    const h = this.chunk;
    const at = this.used;
    h.writeUInt32LE(seconds >>> 0, at + F.TS_SEC);
    h.writeUInt32LE(micros, at + F.TS_USEC);
    h.writeUInt32LE(included, at + F.INCL_LEN);
    h.writeUInt32LE(original, at + F.ORIG_LEN);
    this.used += F.RECORD_END;
  }

  private append(buf: Buffer, off: number, len: number): void {
    if (this.used + len > this.chunk.length) {
      this.flush();
      if (len > this.chunk.length) {
        let done = 0;
        while (done < len) done += writeSync(this.fd, buf, off + done, len - done);
        return;
      }
    }
    buf.copy(this.chunk, this.used, off, off + len);
    this.used += len;
  }
}
