// ICMP for IPv4 (RFC 792): echo for tests and tools, destination unreachable for the engine (no route,
// fragmentation needed), built in place without allocating.
import { internetChecksum, onesComplementSum } from './checksum';
import { WireError } from './errors';
import { IPPROTO_ICMP, IPV4_HEADER_LEN, Ipv4View, writeIpv4Header } from './ipv4';
import type { IPv4 } from './address';
import { HeaderView } from './view';

const F = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  IDENTIFIER: 4, // echo
  SEQUENCE: 6, // echo
  NEXT_HOP_MTU: 6, // destination unreachable, code 4 (RFC 1191); bytes 4-5 are unused there
  END: 8,
} as const;

export const ICMP_HEADER_LEN = F.END;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;

export const ICMP_NET_UNREACHABLE = 0;
export const ICMP_HOST_UNREACHABLE = 1;
export const ICMP_PROTOCOL_UNREACHABLE = 2;
export const ICMP_PORT_UNREACHABLE = 3;
export const ICMP_FRAG_NEEDED = 4;

/** RFC 1812 4.3.2.3: an ICMP error, IP header included, should not exceed 576 bytes. */
export const ICMP_ERROR_MAX_LEN = 576;

export type IcmpProblem = 'truncated' | 'bad-checksum';

export class IcmpView extends HeaderView {

  get type(): number {
    return this.buf[this.off + F.TYPE];
  }
  set type(v: number) {
    this.buf[this.off + F.TYPE] = v;
  }

  get code(): number {
    return this.buf[this.off + F.CODE];
  }
  set code(v: number) {
    this.buf[this.off + F.CODE] = v;
  }

  get checksum(): number {
    return this.buf.readUInt16BE(this.off + F.CHECKSUM);
  }
  set checksum(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.CHECKSUM);
  }

  get identifier(): number {
    return this.buf.readUInt16BE(this.off + F.IDENTIFIER);
  }
  set identifier(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.IDENTIFIER);
  }

  get sequence(): number {
    return this.buf.readUInt16BE(this.off + F.SEQUENCE);
  }
  set sequence(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.SEQUENCE);
  }

  get nextHopMtu(): number {
    return this.buf.readUInt16BE(this.off + F.NEXT_HOP_MTU);
  }
  set nextHopMtu(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.NEXT_HOP_MTU);
  }

  get payloadOffset(): number {
    return this.off + F.END;
  }

  /** Checksum over the whole message buf[off, off + len), with the checksum field taken as zero. */
  computeChecksum(len: number): number {
    const sum = onesComplementSum(this.buf, this.off, this.off + F.CHECKSUM);
    return internetChecksum(this.buf, this.off + F.CHECKSUM + 2, this.off + len, sum);
  }

  fillChecksum(len: number): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.buf, this.off, this.off + len);
  }

  checksumValid(len: number): boolean {
    return internetChecksum(this.buf, this.off, this.off + len) === 0;
  }
}

/** Validates the ICMP message buf[off, off + len) (len: the IP payload length), checksum included. */
export function checkIcmp(buf: Buffer, off: number, len: number): IcmpProblem | undefined {
  if (off < 0 || len < ICMP_HEADER_LEN || off + len > buf.length) return 'truncated';
  if (internetChecksum(buf, off, off + len) !== 0) return 'bad-checksum';
  return undefined;
}

export interface IcmpRepr {
  type: number;
  code: number;
  /** Echo request/reply only. */
  identifier?: number;
  sequence?: number;
  /** Destination unreachable, code ICMP_FRAG_NEEDED only. */
  nextHopMtu?: number;
  /** Bytes after the 8-byte header (echo data, or the quoted original datagram). */
  payloadLength: number;
}

function isEcho(type: number): boolean {
  return type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY;
}

export function parseIcmp(buf: Buffer, off = 0, len = buf.length - off): IcmpRepr {
  const problem = checkIcmp(buf, off, len);
  if (problem) throw new WireError('icmp', problem);
  const v = new IcmpView(buf, off);
  const repr: IcmpRepr = { type: v.type, code: v.code, payloadLength: len - ICMP_HEADER_LEN };
  if (isEcho(repr.type)) {
    repr.identifier = v.identifier;
    repr.sequence = v.sequence;
  } else if (repr.type === ICMP_DEST_UNREACHABLE && repr.code === ICMP_FRAG_NEEDED) {
    repr.nextHopMtu = v.nextHopMtu;
  }
  return repr;
}

/** Writes the 8-byte header and the checksum over header + payload (the payload must already follow the header). */
export function emitIcmp(repr: IcmpRepr, buf: Buffer, off: number): number {
  const v = new IcmpView(buf, off);
  v.type = repr.type;
  v.code = repr.code;
  v.identifier = repr.identifier ?? 0;
  v.sequence = repr.nextHopMtu ?? repr.sequence ?? 0;
  v.fillChecksum(ICMP_HEADER_LEN + repr.payloadLength);
  return ICMP_HEADER_LEN;
}

const originalView = new Ipv4View();
const replyView = new IcmpView();

/**
 * Writes a complete IPv4 packet into out at outOff: ICMP destination unreachable (type 3) with `code` and, for
 * ICMP_FRAG_NEEDED, `nextHopMtu`, from `from` to the original's source, quoting the original IPv4 packet
 * (original[originalOff, originalOff + originalLen)) as far as the reply stays <= 576 bytes (RFC 1812 4.3.2.3).
 * Returns the reply's length. `out` may be the original's own buffer (e.g. outOff = originalOff - 28 in the
 * headroom): the quote is moved before the headers are written. The caller checks icmpErrorAllowed first.
 */
export function emitIcmpUnreachable(
  out: Buffer,
  outOff: number,
  code: number,
  from: IPv4,
  original: Buffer,
  originalOff: number,
  originalLen: number,
  nextHopMtu = 0,
): number {
  const to = originalView.wrap(original, originalOff).source;
  const quoteLen = Math.min(originalLen, ICMP_ERROR_MAX_LEN - IPV4_HEADER_LEN - ICMP_HEADER_LEN);
  const icmpOff = outOff + IPV4_HEADER_LEN;
  original.copy(out, icmpOff + ICMP_HEADER_LEN, originalOff, originalOff + quoteLen);
  const icmpLen = ICMP_HEADER_LEN + quoteLen;
  // RFC 1812 4.3.2.5: ICMP errors go out with precedence 6 (internetwork control), as Linux sends them.
  writeIpv4Header(out, outOff, from, to, IPPROTO_ICMP, icmpLen, 64, 0xc0);
  const icmp = replyView.wrap(out, icmpOff);
  icmp.type = ICMP_DEST_UNREACHABLE;
  icmp.code = code;
  icmp.identifier = 0;
  icmp.nextHopMtu = code === ICMP_FRAG_NEEDED ? nextHopMtu : 0;
  icmp.fillChecksum(icmpLen);
  return IPV4_HEADER_LEN + icmpLen;
}

/** Query (informational) types; every other type, unknown ones included, counts as an error (as Linux does). */
function isIcmpQuery(type: number): boolean {
  return type === ICMP_ECHO_REPLY || type === ICMP_ECHO_REQUEST || (type >= 9 && type <= 10) || (type >= 13 && type <= 18);
}

/**
 * Whether the IPv4 packet at off (already validated by checkIpv4) may be answered with an ICMP error (RFC 1122
 * 3.2.2, RFC 1812 4.3.2.7): not an ICMP error itself, not a non-first fragment, not to a broadcast or multicast
 * destination, and not from an address that names no single host (0/8, 127/8, multicast, class E, broadcast).
 */
export function icmpErrorAllowed(buf: Buffer, off: number): boolean {
  const ip = originalView.wrap(buf, off);
  if (ip.fragmentOffset !== 0) return false;
  const source = ip.source;
  const sourceTop = source >>> 24;
  if (sourceTop === 0 || sourceTop === 127 || sourceTop >= 224) return false;
  const destination = ip.destination;
  if (destination >>> 28 === 0xe || destination === 0xffffffff) return false;
  if (ip.protocol === IPPROTO_ICMP) {
    const icmpOff = ip.payloadOffset;
    // Too short to tell what it is: do not risk answering an error with an error.
    if (ip.totalLength < ip.headerLength + 1 || icmpOff >= buf.length) return false;
    if (!isIcmpQuery(buf[icmpOff])) return false;
  }
  return true;
}
