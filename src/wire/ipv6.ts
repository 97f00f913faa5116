// IPv6 header (RFC 8200 section 3) and the walk over its extension headers to the upper layer (RFC 8200 section 4).
// Addresses stay bytes in the packet: the data path compares and copies them as words (address6.ts), and only the
// control path (parseIpv6, tests) makes bigints.
import { type IPv6, readIPv6, writeIPv6 } from './address6';
import { WireError } from './errors';
import { HeaderView } from './view';

const F = {
  VERSION_CLASS_FLOW: 0, // 4 bits version, 8 bits traffic class, 20 bits flow label
  PAYLOAD_LENGTH: 4,
  NEXT_HEADER: 6,
  HOP_LIMIT: 7,
  SOURCE: 8, // 16 bytes
  DESTINATION: 24, // 16 bytes
  END: 40,
} as const;

export const IPV6_HEADER_LEN = F.END;
export const IPV6_SOURCE_OFFSET = F.SOURCE;
export const IPV6_DESTINATION_OFFSET = F.DESTINATION;
/** RFC 8200 section 5: every link carries 1280 bytes; an ICMPv6 error never exceeds it (RFC 4443 2.4 (c)). */
export const IPV6_MIN_MTU = 1280;

// Next Header values (IANA "Assigned Internet Protocol Numbers").
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_TCP6 = 6;
export const IPPROTO_UDP6 = 17;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;

/**
 * Extension headers walked before giving up: RFC 8200 4.1 allows each at most once (destination options twice),
 * so a legitimate chain has at most 6 (hop-by-hop, dest, routing, fragment, AH, dest); we allow 8.
 */
export const MAX_EXTENSION_HEADERS = 8;

const FRAGMENT_HEADER_LEN = 8;
const FRAGMENT_OFFSET_MASK = 0xfff8;
const FRAGMENT_MORE = 0x0001;

export type Ipv6Problem = 'truncated' | 'bad-version' | 'bad-payload-length';
/** Why an extension header chain cannot be walked: a drop reason (stage `tun-ipv6` / `inner-ipv6`). */
export type Ipv6ChainProblem = 'truncated-extension' | 'misplaced-hop-by-hop' | 'too-many-extensions';

export class Ipv6View extends HeaderView {

  get version(): number {
    return this.buf[this.off] >>> 4;
  }

  get trafficClass(): number {
    return (this.buf.readUInt16BE(this.off + F.VERSION_CLASS_FLOW) >>> 4) & 0xff;
  }

  get flowLabel(): number {
    return this.buf.readUInt32BE(this.off + F.VERSION_CLASS_FLOW) & 0xfffff;
  }

  /** Bytes after the 40-byte header, extension headers included. */
  get payloadLength(): number {
    return this.buf.readUInt16BE(this.off + F.PAYLOAD_LENGTH);
  }
  set payloadLength(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.PAYLOAD_LENGTH);
  }

  /** Header and payload: the packet's length on the wire. */
  get totalLength(): number {
    return IPV6_HEADER_LEN + this.buf.readUInt16BE(this.off + F.PAYLOAD_LENGTH);
  }

  get nextHeader(): number {
    return this.buf[this.off + F.NEXT_HEADER];
  }
  set nextHeader(v: number) {
    this.buf[this.off + F.NEXT_HEADER] = v;
  }

  get hopLimit(): number {
    return this.buf[this.off + F.HOP_LIMIT];
  }
  set hopLimit(v: number) {
    this.buf[this.off + F.HOP_LIMIT] = v;
  }

  /** Where the source address's 16 bytes start (the data path compares words there). */
  get sourceOffset(): number {
    return this.off + F.SOURCE;
  }

  get destinationOffset(): number {
    return this.off + F.DESTINATION;
  }

  /** Control path only: allocates a bigint. */
  get source(): IPv6 {
    return readIPv6(this.buf, this.off + F.SOURCE);
  }
  set source(v: IPv6) {
    writeIPv6(this.buf, this.off + F.SOURCE, v);
  }

  /** Control path only: allocates a bigint. */
  get destination(): IPv6 {
    return readIPv6(this.buf, this.off + F.DESTINATION);
  }
  set destination(v: IPv6) {
    writeIPv6(this.buf, this.off + F.DESTINATION, v);
  }

  /** Where the first header after the fixed header (an extension header or the upper layer) starts. */
  get payloadOffset(): number {
    return this.off + F.END;
  }
}

/**
 * Validates an IPv6 header that arrived in buf[off, off + len): version 6 and a payload length that the bytes hold.
 * Bytes after the payload (link padding) are allowed. Jumbograms (payload length 0 with a hop-by-hop Jumbo Payload
 * option, RFC 2675) cannot arrive in 64 KB reads; a zero payload length is simply an empty payload.
 */
export function checkIpv6(buf: Buffer, off: number, len: number): Ipv6Problem | undefined {
  if (off < 0 || len < IPV6_HEADER_LEN || off + len > buf.length) return 'truncated';
  if (buf[off] >>> 4 !== 6) return 'bad-version';
  if (IPV6_HEADER_LEN + buf.readUInt16BE(off + F.PAYLOAD_LENGTH) > len) return 'bad-payload-length';
  return undefined;
}

/**
 * Where an IPv6 packet's upper layer is, filled by walkIpv6 (one instance per caller, reused: no allocation).
 * For a non-first fragment the upper-layer header is in another fragment: `protocol` is the fragment header's next
 * header and `fragmentOffset` is non-zero, so callers must not read a transport header at `offset`.
 */
export class Ipv6UpperLayer {
  /** Upper-layer protocol (TCP 6, UDP 17, ICMPv6 58, No Next Header 59, ESP 50...). */
  protocol = IPPROTO_NONE;
  /** Offset in the buffer where the upper-layer header starts. */
  offset = 0;
  /** Extension headers walked. */
  extensions = 0;
  /** A fragment header was seen. */
  fragment = false;
  /** Its offset in bytes (0 for the first fragment). */
  fragmentOffset = 0;
  moreFragments = false;
}

/**
 * Walks the extension headers of the IPv6 packet at buf[off] (checkIpv6 passed) to the upper layer, bounded by the
 * payload length and MAX_EXTENSION_HEADERS, and fills `out`. Hop-by-hop options, routing, destination options
 * (RFC 8200 4.3-4.6, length (n + 1) * 8), fragment (4.5, 8 bytes) and AH (RFC 4302 2.2, length (n + 2) * 4) are
 * stepped over; anything else (ESP included, whose payload is opaque) is the upper layer. Returns the reason a
 * chain is malformed: a header running past the payload, hop-by-hop anywhere but first (RFC 8200 4.1), too long.
 */
export function walkIpv6(buf: Buffer, off: number, out: Ipv6UpperLayer): Ipv6ChainProblem | undefined {
  const end = off + IPV6_HEADER_LEN + buf.readUInt16BE(off + F.PAYLOAD_LENGTH);
  let next = buf[off + F.NEXT_HEADER];
  let at = off + IPV6_HEADER_LEN;
  out.extensions = 0;
  out.fragment = false;
  out.fragmentOffset = 0;
  out.moreFragments = false;
  for (;;) {
    let headerLen: number;
    if (next === IPPROTO_HOPOPTS && out.extensions !== 0) return 'misplaced-hop-by-hop';
    switch (next) {
      case IPPROTO_HOPOPTS:
      case IPPROTO_ROUTING:
      case IPPROTO_DSTOPTS:
        if (at + 2 > end) return 'truncated-extension';
        headerLen = (buf[at + 1] + 1) * 8;
        break;
      case IPPROTO_FRAGMENT:
        if (at + FRAGMENT_HEADER_LEN > end) return 'truncated-extension';
        headerLen = FRAGMENT_HEADER_LEN;
        out.fragment = true;
        out.fragmentOffset = buf.readUInt16BE(at + 2) & FRAGMENT_OFFSET_MASK;
        out.moreFragments = (buf.readUInt16BE(at + 2) & FRAGMENT_MORE) !== 0;
        break;
      case IPPROTO_AH:
        if (at + 2 > end) return 'truncated-extension';
        headerLen = (buf[at + 1] + 2) * 4;
        break;
      default:
        out.protocol = next;
        out.offset = at;
        return undefined;
    }
    if (at + headerLen > end) return 'truncated-extension';
    if (++out.extensions > MAX_EXTENSION_HEADERS) return 'too-many-extensions';
    next = buf[at];
    at += headerLen;
    if (out.fragmentOffset !== 0) {
      // A non-first fragment: what follows is the middle of the original payload, not headers.
      out.protocol = next;
      out.offset = at;
      return undefined;
    }
  }
}

export interface Ipv6Repr {
  source: IPv6;
  destination: IPv6;
  /** The first Next Header (an extension header or the upper layer). */
  nextHeader: number;
  /** Bytes after the fixed header. */
  payloadLength: number;
  hopLimit: number;
  trafficClass?: number;
  flowLabel?: number;
}

export function parseIpv6(buf: Buffer, off = 0, len = buf.length - off): Ipv6Repr {
  const problem = checkIpv6(buf, off, len);
  if (problem) throw new WireError('ipv6', problem);
  const v = new Ipv6View(buf, off);
  return {
    source: v.source,
    destination: v.destination,
    nextHeader: v.nextHeader,
    payloadLength: v.payloadLength,
    hopLimit: v.hopLimit,
    trafficClass: v.trafficClass,
    flowLabel: v.flowLabel,
  };
}

/** Writes the 40-byte header; the payload is the caller's. Returns 40. */
export function emitIpv6(repr: Ipv6Repr, buf: Buffer, off: number): number {
  const tc = (repr.trafficClass ?? 0) & 0xff;
  buf.writeUInt32BE(((6 << 28) | (tc << 20) | ((repr.flowLabel ?? 0) & 0xfffff)) >>> 0, off + F.VERSION_CLASS_FLOW);
  buf.writeUInt16BE(repr.payloadLength, off + F.PAYLOAD_LENGTH);
  buf[off + F.NEXT_HEADER] = repr.nextHeader;
  buf[off + F.HOP_LIMIT] = repr.hopLimit;
  writeIPv6(buf, off + F.SOURCE, repr.source);
  writeIPv6(buf, off + F.DESTINATION, repr.destination);
  return IPV6_HEADER_LEN;
}

/**
 * Hot-path form of emitIpv6 without a repr or a bigint: traffic class and flow label 0, the addresses copied from
 * bytes (each 16 bytes at source[sourceOff], destination[destinationOff]; either may be buf itself, overlapping the
 * header being written: they are read before anything is written). Returns 40.
 */
export function writeIpv6Header(
  buf: Buffer,
  off: number,
  nextHeader: number,
  payloadLength: number,
  hopLimit: number,
  source: Buffer,
  sourceOff: number,
  destination: Buffer,
  destinationOff: number,
): number {
  // Read all eight words first: the addresses may lie where the header goes.
  const s0 = source.readUInt32BE(sourceOff);
  const s1 = source.readUInt32BE(sourceOff + 4);
  const s2 = source.readUInt32BE(sourceOff + 8);
  const s3 = source.readUInt32BE(sourceOff + 12);
  const d0 = destination.readUInt32BE(destinationOff);
  const d1 = destination.readUInt32BE(destinationOff + 4);
  const d2 = destination.readUInt32BE(destinationOff + 8);
  const d3 = destination.readUInt32BE(destinationOff + 12);
  buf.writeUInt32BE(0x60000000, off + F.VERSION_CLASS_FLOW);
  buf.writeUInt16BE(payloadLength, off + F.PAYLOAD_LENGTH);
  buf[off + F.NEXT_HEADER] = nextHeader;
  buf[off + F.HOP_LIMIT] = hopLimit;
  buf.writeUInt32BE(s0, off + F.SOURCE);
  buf.writeUInt32BE(s1, off + F.SOURCE + 4);
  buf.writeUInt32BE(s2, off + F.SOURCE + 8);
  buf.writeUInt32BE(s3, off + F.SOURCE + 12);
  buf.writeUInt32BE(d0, off + F.DESTINATION);
  buf.writeUInt32BE(d1, off + F.DESTINATION + 4);
  buf.writeUInt32BE(d2, off + F.DESTINATION + 8);
  buf.writeUInt32BE(d3, off + F.DESTINATION + 12);
  return IPV6_HEADER_LEN;
}
