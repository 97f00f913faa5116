// TCP header (RFC 9293), only what a forwarder looks at: ports (flow hash), flags, and the checksum (the field
// problem in FACTS.md: a kernel peer may send CHECKSUM_PARTIAL segments whose checksum was never completed).
import type { IPv4 } from './address';
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum';
import { WireError } from './errors';
import { IPPROTO_TCP, Ipv4View } from './ipv4';
import { HeaderView } from './view';

const F = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFFSET: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
  END: 20,
} as const;

export const TCP_HEADER_LEN = F.END;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;

export type TcpProblem = 'truncated' | 'bad-data-offset';

export class TcpView extends HeaderView {

  get srcPort(): number {
    return this.buf.readUInt16BE(this.off + F.SRC_PORT);
  }
  set srcPort(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.SRC_PORT);
  }

  get dstPort(): number {
    return this.buf.readUInt16BE(this.off + F.DST_PORT);
  }
  set dstPort(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.DST_PORT);
  }

  get seq(): number {
    return this.buf.readUInt32BE(this.off + F.SEQ);
  }
  set seq(v: number) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.SEQ);
  }

  get ack(): number {
    return this.buf.readUInt32BE(this.off + F.ACK);
  }
  set ack(v: number) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.ACK);
  }

  /** Header length in bytes (the field counts 32-bit words). */
  get dataOffset(): number {
    return (this.buf[this.off + F.DATA_OFFSET] >>> 4) * 4;
  }
  set dataOffset(bytes: number) {
    const at = this.off + F.DATA_OFFSET;
    this.buf[at] = (((bytes >>> 2) & 0x0f) << 4) | (this.buf[at] & 0x0f);
  }

  /** The eight flag bits CWR..FIN (TCP_SYN, TCP_ACK, ...). */
  get flags(): number {
    return this.buf[this.off + F.FLAGS];
  }
  set flags(v: number) {
    this.buf[this.off + F.FLAGS] = v;
  }

  get window(): number {
    return this.buf.readUInt16BE(this.off + F.WINDOW);
  }
  set window(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.WINDOW);
  }

  get checksum(): number {
    return this.buf.readUInt16BE(this.off + F.CHECKSUM);
  }
  set checksum(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.CHECKSUM);
  }

  get payloadOffset(): number {
    return this.off + this.dataOffset;
  }
}

const ipScratch = new Ipv4View();

/**
 * The TCP checksum field value for the IPv4 packet at ipOff (segment = IPv4 payload), computed with the checksum
 * field taken as zero.
 */
export function tcpChecksum(buf: Buffer, ipOff: number): number {
  const ip = ipScratch.wrap(buf, ipOff);
  const tcpOff = ip.payloadOffset;
  const length = ip.payloadLength;
  let sum = pseudoHeaderSum(ip.source, ip.destination, IPPROTO_TCP, length);
  sum = onesComplementSum(buf, tcpOff, tcpOff + F.CHECKSUM, sum);
  return foldChecksum(onesComplementSum(buf, tcpOff + F.CHECKSUM + 2, tcpOff + length, sum));
}

export function fillTcpChecksum(buf: Buffer, ipOff: number): void {
  const ip = ipScratch.wrap(buf, ipOff);
  buf.writeUInt16BE(tcpChecksum(buf, ipOff), ip.payloadOffset + F.CHECKSUM);
}

export function tcpChecksumValid(buf: Buffer, ipOff: number): boolean {
  const ip = ipScratch.wrap(buf, ipOff);
  return buf.readUInt16BE(ip.payloadOffset + F.CHECKSUM) === tcpChecksum(buf, ipOff);
}

/** Validates the TCP header in buf[off, off + len) (len: the IP payload length). The checksum: tcpChecksumValid. */
export function checkTcp(buf: Buffer, off: number, len: number): TcpProblem | undefined {
  if (off < 0 || len < TCP_HEADER_LEN || off + len > buf.length) return 'truncated';
  const dataOffset = (buf[off + F.DATA_OFFSET] >>> 4) * 4;
  if (dataOffset < TCP_HEADER_LEN || dataOffset > len) return 'bad-data-offset';
  return undefined;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** Bytes after the header. */
  payloadLength: number;
  /** With both addresses, emit fills the checksum (the payload must already follow the header); without, it writes 0. */
  source?: IPv4;
  destination?: IPv4;
}

export function parseTcp(buf: Buffer, off = 0, len = buf.length - off): TcpRepr {
  const problem = checkTcp(buf, off, len);
  if (problem) throw new WireError('tcp', problem);
  const v = new TcpView(buf, off);
  return {
    srcPort: v.srcPort,
    dstPort: v.dstPort,
    seq: v.seq,
    ack: v.ack,
    flags: v.flags,
    window: v.window,
    payloadLength: len - v.dataOffset,
  };
}

/** Writes a 20-byte header (no options). */
export function emitTcp(repr: TcpRepr, buf: Buffer, off: number): number {
  const v = new TcpView(buf, off);
  v.srcPort = repr.srcPort;
  v.dstPort = repr.dstPort;
  v.seq = repr.seq;
  v.ack = repr.ack;
  buf[off + F.DATA_OFFSET] = (TCP_HEADER_LEN / 4) << 4;
  v.flags = repr.flags;
  v.window = repr.window;
  v.checksum = 0;
  buf.writeUInt16BE(0, off + F.URGENT);
  if (repr.source !== undefined && repr.destination !== undefined) {
    const length = TCP_HEADER_LEN + repr.payloadLength;
    const sum = pseudoHeaderSum(repr.source, repr.destination, IPPROTO_TCP, length);
    v.checksum = foldChecksum(onesComplementSum(buf, off, off + length, sum));
  }
  return TCP_HEADER_LEN;
}
