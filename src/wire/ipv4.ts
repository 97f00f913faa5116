// IPv4 header (RFC 791). Options are carried over untouched (headerLength covers them) but never emitted.
import type { IPv4 } from './address';
import { incrementalUpdate, internetChecksum, onesComplementSum } from './checksum';
import { WireError } from './errors';
import { HeaderView } from './view';

const F = {
  VERSION_IHL: 0,
  DSCP_ECN: 1,
  TOTAL_LENGTH: 2,
  IDENTIFICATION: 4,
  FLAGS_FRAGMENT: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SOURCE: 12,
  DESTINATION: 16,
  END: 20,
} as const;

export const IPV4_HEADER_LEN = F.END;
export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const FLAG_DONT_FRAGMENT = 0x4000;
const FLAG_MORE_FRAGMENTS = 0x2000;
const FRAGMENT_OFFSET_MASK = 0x1fff;

export type Ipv4Problem = 'truncated' | 'bad-version' | 'bad-header-length' | 'bad-total-length' | 'bad-checksum';

export class Ipv4View extends HeaderView {

  get version(): number {
    return this.buf[this.off + F.VERSION_IHL] >>> 4;
  }
  set version(v: number) {
    const at = this.off + F.VERSION_IHL;
    this.buf[at] = ((v & 0x0f) << 4) | (this.buf[at] & 0x0f);
  }

  /** Header length in bytes (IHL * 4), options included. */
  get headerLength(): number {
    return (this.buf[this.off + F.VERSION_IHL] & 0x0f) * 4;
  }
  set headerLength(bytes: number) {
    const at = this.off + F.VERSION_IHL;
    this.buf[at] = (this.buf[at] & 0xf0) | ((bytes >>> 2) & 0x0f);
  }

  get dscpEcn(): number {
    return this.buf[this.off + F.DSCP_ECN];
  }
  set dscpEcn(v: number) {
    this.buf[this.off + F.DSCP_ECN] = v;
  }

  get totalLength(): number {
    return this.buf.readUInt16BE(this.off + F.TOTAL_LENGTH);
  }
  set totalLength(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.TOTAL_LENGTH);
  }

  get identification(): number {
    return this.buf.readUInt16BE(this.off + F.IDENTIFICATION);
  }
  set identification(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.IDENTIFICATION);
  }

  get dontFragment(): boolean {
    return (this.buf.readUInt16BE(this.off + F.FLAGS_FRAGMENT) & FLAG_DONT_FRAGMENT) !== 0;
  }
  set dontFragment(v: boolean) {
    this.setFlag(FLAG_DONT_FRAGMENT, v);
  }

  get moreFragments(): boolean {
    return (this.buf.readUInt16BE(this.off + F.FLAGS_FRAGMENT) & FLAG_MORE_FRAGMENTS) !== 0;
  }
  set moreFragments(v: boolean) {
    this.setFlag(FLAG_MORE_FRAGMENTS, v);
  }

  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number {
    return (this.buf.readUInt16BE(this.off + F.FLAGS_FRAGMENT) & FRAGMENT_OFFSET_MASK) * 8;
  }
  set fragmentOffset(bytes: number) {
    const at = this.off + F.FLAGS_FRAGMENT;
    this.buf.writeUInt16BE((this.buf.readUInt16BE(at) & ~FRAGMENT_OFFSET_MASK & 0xffff) | ((bytes >>> 3) & FRAGMENT_OFFSET_MASK), at);
  }

  get ttl(): number {
    return this.buf[this.off + F.TTL];
  }
  set ttl(v: number) {
    this.buf[this.off + F.TTL] = v;
  }

  get protocol(): number {
    return this.buf[this.off + F.PROTOCOL];
  }
  set protocol(v: number) {
    this.buf[this.off + F.PROTOCOL] = v;
  }

  get checksum(): number {
    return this.buf.readUInt16BE(this.off + F.CHECKSUM);
  }
  set checksum(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.CHECKSUM);
  }

  get source(): IPv4 {
    return this.buf.readUInt32BE(this.off + F.SOURCE);
  }
  set source(v: IPv4) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.SOURCE);
  }

  get destination(): IPv4 {
    return this.buf.readUInt32BE(this.off + F.DESTINATION);
  }
  set destination(v: IPv4) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.DESTINATION);
  }

  /** Where the payload (the transport header) starts in buf. */
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }

  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }

  /** The header checksum as it should be, computed with the checksum field taken as zero. */
  computeChecksum(): number {
    const start = this.off;
    const sum = onesComplementSum(this.buf, start, start + F.CHECKSUM);
    return internetChecksum(this.buf, start + F.CHECKSUM + 2, start + this.headerLength, sum);
  }

  fillChecksum(): void {
    this.checksum = this.computeChecksum();
  }

  checksumValid(): boolean {
    return internetChecksum(this.buf, this.off, this.off + this.headerLength) === 0;
  }

  /**
   * Decrements the TTL and patches the checksum incrementally (RFC 1624), as a router does (RFC 1812 5.3.1).
   * Returns the new TTL. The caller drops packets whose TTL is <= 1 before forwarding; a TTL of 0 is left alone.
   */
  decrementTtl(): number {
    const at = this.off + F.TTL;
    const ttl = this.buf[at];
    if (ttl === 0) return 0;
    const protocol = this.buf[at + 1];
    this.checksum = incrementalUpdate(this.checksum, (ttl << 8) | protocol, ((ttl - 1) << 8) | protocol);
    this.buf[at] = ttl - 1;
    return ttl - 1;
  }

  private setFlag(mask: number, on: boolean): void {
    const at = this.off + F.FLAGS_FRAGMENT;
    const word = this.buf.readUInt16BE(at);
    this.buf.writeUInt16BE(on ? word | mask : word & ~mask & 0xffff, at);
  }
}

/** Validates an IPv4 header that arrived in buf[off, off + len). Bytes after totalLength (link padding) are allowed. */
export function checkIpv4(buf: Buffer, off: number, len: number): Ipv4Problem | undefined {
  if (off < 0 || len < IPV4_HEADER_LEN || off + len > buf.length) return 'truncated';
  const versionIhl = buf[off + F.VERSION_IHL];
  if (versionIhl >>> 4 !== 4) return 'bad-version';
  const headerLength = (versionIhl & 0x0f) * 4;
  if (headerLength < IPV4_HEADER_LEN) return 'bad-header-length';
  if (headerLength > len) return 'truncated';
  const totalLength = buf.readUInt16BE(off + F.TOTAL_LENGTH);
  if (totalLength < headerLength || totalLength > len) return 'bad-total-length';
  if (internetChecksum(buf, off, off + headerLength) !== 0) return 'bad-checksum';
  return undefined;
}

export interface Ipv4Repr {
  source: IPv4;
  destination: IPv4;
  protocol: number;
  /** Bytes after the header: totalLength - headerLength. */
  payloadLength: number;
  ttl: number;
  dscpEcn?: number;
  identification?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** In bytes, a multiple of 8. */
  fragmentOffset?: number;
}

export function parseIpv4(buf: Buffer, off = 0, len = buf.length - off): Ipv4Repr {
  const problem = checkIpv4(buf, off, len);
  if (problem) throw new WireError('ipv4', problem);
  const v = new Ipv4View(buf, off);
  return {
    source: v.source,
    destination: v.destination,
    protocol: v.protocol,
    payloadLength: v.payloadLength,
    ttl: v.ttl,
    dscpEcn: v.dscpEcn,
    identification: v.identification,
    dontFragment: v.dontFragment,
    moreFragments: v.moreFragments,
    fragmentOffset: v.fragmentOffset,
  };
}

const scratch = new Ipv4View();

/**
 * Hot-path form of emitIpv4 without a repr object: a 20-byte header, identification 0, no flags, checksum filled.
 * Returns 20.
 */
export function writeIpv4Header(
  buf: Buffer,
  off: number,
  source: IPv4,
  destination: IPv4,
  protocol: number,
  payloadLength: number,
  ttl = 64,
  dscpEcn = 0,
): number {
  const v = scratch.wrap(buf, off);
  buf[off + F.VERSION_IHL] = 0x45;
  v.dscpEcn = dscpEcn;
  v.totalLength = IPV4_HEADER_LEN + payloadLength;
  buf.writeUInt32BE(0, off + F.IDENTIFICATION); // identification and flags/fragment offset
  v.ttl = ttl;
  v.protocol = protocol;
  v.checksum = 0;
  v.source = source;
  v.destination = destination;
  v.fillChecksum();
  return IPV4_HEADER_LEN;
}

/** Writes a 20-byte header (no options) with its checksum; the payload is the caller's. */
export function emitIpv4(repr: Ipv4Repr, buf: Buffer, off: number): number {
  const v = scratch.wrap(buf, off);
  buf[off + F.VERSION_IHL] = 0x45;
  v.dscpEcn = repr.dscpEcn ?? 0;
  v.totalLength = IPV4_HEADER_LEN + repr.payloadLength;
  v.identification = repr.identification ?? 0;
  const flags = (repr.dontFragment ? FLAG_DONT_FRAGMENT : 0) | (repr.moreFragments ? FLAG_MORE_FRAGMENTS : 0);
  buf.writeUInt16BE(flags | (((repr.fragmentOffset ?? 0) >>> 3) & FRAGMENT_OFFSET_MASK), off + F.FLAGS_FRAGMENT);
  v.ttl = repr.ttl;
  v.protocol = repr.protocol;
  v.source = repr.source;
  v.destination = repr.destination;
  v.checksum = 0;
  v.fillChecksum();
  return IPV4_HEADER_LEN;
}
