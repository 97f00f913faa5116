// UDP header (RFC 768). Its checksum covers an IPv4 pseudo-header, so the checksum helpers take the enclosing
// IPv4 packet. Over IPv4 a zero checksum means "none" (VXLAN senders usually leave it so, RFC 7348 section 5).
import type { IPv4 } from './address';
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum';
import { WireError } from './errors';
import { IPPROTO_UDP, Ipv4View } from './ipv4';
import { HeaderView } from './view';

const F = {
  SRC_PORT: 0,
  DST_PORT: 2,
  LENGTH: 4,
  CHECKSUM: 6,
  END: 8,
} as const;

export const UDP_HEADER_LEN = F.END;

export type UdpProblem = 'truncated' | 'bad-length' | 'bad-checksum';

export class UdpView extends HeaderView {

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

  /** Header plus payload, in bytes. */
  get length(): number {
    return this.buf.readUInt16BE(this.off + F.LENGTH);
  }
  set length(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.LENGTH);
  }

  get checksum(): number {
    return this.buf.readUInt16BE(this.off + F.CHECKSUM);
  }
  set checksum(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.CHECKSUM);
  }

  get payloadOffset(): number {
    return this.off + F.END;
  }
}

const ipScratch = new Ipv4View();

/** Unfolded sum of pseudo-header + UDP header (checksum field taken as zero) + payload, for the UDP at udpOff. */
function udpSum(buf: Buffer, udpOff: number, source: IPv4, destination: IPv4): number {
  const length = buf.readUInt16BE(udpOff + F.LENGTH);
  let sum = pseudoHeaderSum(source, destination, IPPROTO_UDP, length);
  sum = onesComplementSum(buf, udpOff, udpOff + F.CHECKSUM, sum);
  return onesComplementSum(buf, udpOff + F.END, udpOff + length, sum);
}

/**
 * The UDP checksum field value for the IPv4 packet at ipOff (addresses from its header, extent from the UDP length
 * field), computed with the checksum field taken as zero. A computed 0 is sent as 0xFFFF (RFC 768).
 */
export function udpChecksum(buf: Buffer, ipOff: number): number {
  const ip = ipScratch.wrap(buf, ipOff);
  const value = foldChecksum(udpSum(buf, ip.payloadOffset, ip.source, ip.destination));
  return value === 0 ? 0xffff : value;
}

/** Computes and stores the UDP checksum of the IPv4 packet at ipOff. */
export function fillUdpChecksum(buf: Buffer, ipOff: number): void {
  const ip = ipScratch.wrap(buf, ipOff);
  buf.writeUInt16BE(udpChecksum(buf, ipOff), ip.payloadOffset + F.CHECKSUM);
}

/** True when the UDP checksum of the IPv4 packet at ipOff is absent (0) or correct. */
export function udpChecksumValid(buf: Buffer, ipOff: number): boolean {
  const ip = ipScratch.wrap(buf, ipOff);
  const stored = buf.readUInt16BE(ip.payloadOffset + F.CHECKSUM);
  return stored === 0 || stored === udpChecksum(buf, ipOff);
}

/**
 * Validates the UDP header in buf[off, off + len) (len: the IP payload length). With the pseudo-header addresses
 * given, also checks the checksum (a zero checksum passes: none was sent).
 */
export function checkUdp(buf: Buffer, off: number, len: number, source?: IPv4, destination?: IPv4): UdpProblem | undefined {
  if (off < 0 || len < UDP_HEADER_LEN || off + len > buf.length) return 'truncated';
  const length = buf.readUInt16BE(off + F.LENGTH);
  if (length < UDP_HEADER_LEN || length > len) return 'bad-length';
  if (source !== undefined && destination !== undefined) {
    const stored = buf.readUInt16BE(off + F.CHECKSUM);
    if (stored !== 0) {
      const computed = foldChecksum(udpSum(buf, off, source, destination));
      if ((computed === 0 ? 0xffff : computed) !== stored) return 'bad-checksum';
    }
  }
  return undefined;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  payloadLength: number;
  /** With both addresses, emit fills the checksum (the payload must already follow the header); without, it writes 0. */
  source?: IPv4;
  destination?: IPv4;
}

export function parseUdp(buf: Buffer, off = 0, len = buf.length - off, source?: IPv4, destination?: IPv4): UdpRepr {
  const problem = checkUdp(buf, off, len, source, destination);
  if (problem) throw new WireError('udp', problem);
  const v = new UdpView(buf, off);
  return { srcPort: v.srcPort, dstPort: v.dstPort, payloadLength: v.length - UDP_HEADER_LEN };
}

export function emitUdp(repr: UdpRepr, buf: Buffer, off: number): number {
  const v = new UdpView(buf, off);
  v.srcPort = repr.srcPort;
  v.dstPort = repr.dstPort;
  v.length = UDP_HEADER_LEN + repr.payloadLength;
  v.checksum = 0;
  if (repr.source !== undefined && repr.destination !== undefined) {
    const value = foldChecksum(udpSum(buf, off, repr.source, repr.destination));
    v.checksum = value === 0 ? 0xffff : value;
  }
  return UDP_HEADER_LEN;
}
