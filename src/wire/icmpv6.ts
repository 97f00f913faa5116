// ICMPv6 (RFC 4443) and the two Neighbor Discovery messages vxtun answers (RFC 4861 4.3, 4.4): the checksum covers
// the IPv6 pseudo-header (RFC 8200 8.1); errors (Destination Unreachable, Packet Too Big) are built in place from the
// offending packet, never about an error, a redirect, a multicast destination (Packet Too Big excepted) or a source
// that names no single node (RFC 4443 2.4 (e)), and quote as much of it as fits in 1280 bytes (2.4 (c)).
import { type Mac, readMac, writeMac } from './address';
import { type IPv6, readIPv6, writeIPv6 } from './address6';
import { internetChecksum, onesComplementSum, pseudoHeaderSum6 } from './checksum';
import { WireError } from './errors';
import {
  IPPROTO_ICMPV6,
  IPV6_DESTINATION_OFFSET,
  IPV6_HEADER_LEN,
  IPV6_MIN_MTU,
  IPV6_SOURCE_OFFSET,
  Ipv6UpperLayer,
  walkIpv6,
  writeIpv6Header,
} from './ipv6';
import { HeaderView } from './view';

const F = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  BODY: 4, // MTU (Packet Too Big), pointer (Parameter Problem), identifier + sequence (Echo), flags (NA), unused
  SEQUENCE: 6, // Echo
  TARGET: 8, // Neighbor Solicitation / Advertisement: 16 bytes
  ND_OPTIONS: 24, // Neighbor Solicitation / Advertisement options
  END: 8,
} as const;

export const ICMPV6_HEADER_LEN = F.END;
export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAMETER_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_ROUTER_SOLICITATION = 133;
export const ICMPV6_ROUTER_ADVERTISEMENT = 134;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
export const ICMPV6_REDIRECT = 137;

/** Destination Unreachable codes (RFC 4443 3.1). */
export const ICMPV6_NO_ROUTE = 0;
export const ICMPV6_ADMIN_PROHIBITED = 1;
export const ICMPV6_ADDRESS_UNREACHABLE = 3;
export const ICMPV6_PORT_UNREACHABLE = 4;

/** Neighbor Solicitation / Advertisement: 8-byte header + 16-byte target, before options (RFC 4861 4.3, 4.4). */
export const ND_MESSAGE_LEN = F.ND_OPTIONS;
/** Source / Target Link-Layer Address option for Ethernet: type, length 1 (8 bytes), 6-byte MAC (RFC 4861 4.6.1). */
export const ND_OPTION_SOURCE_LL = 1;
export const ND_OPTION_TARGET_LL = 2;
export const ND_LL_OPTION_LEN = 8;
/** Neighbor Discovery packets are sent, and accepted only, with hop limit 255 (RFC 4861 7.1.1: never forwarded). */
export const ND_HOP_LIMIT = 255;
/** Neighbor Advertisement flags (RFC 4861 4.4), in the first byte after the checksum. */
export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
/** Hop limit of the ICMPv6 errors we send: Linux's default (net.ipv6.conf.*.hop_limit). */
export const ICMPV6_ERROR_HOP_LIMIT = 64;
/** Largest quote in an error: the whole reply, IPv6 header included, stays within the minimum MTU. */
export const ICMPV6_ERROR_MAX_QUOTE = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN;

export type Icmpv6Problem = 'truncated' | 'bad-checksum';
/** Why a Neighbor Solicitation is not valid (RFC 4861 7.1.1): a drop reason under stage `ndp`. */
export type NeighborSolicitationProblem = 'truncated' | 'bad-hop-limit' | 'bad-code' | 'bad-checksum' | 'bad-option' | 'multicast-target' | 'bad-dad';

export class Icmpv6View extends HeaderView {

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

  /** Packet Too Big: the next-hop MTU (RFC 4443 3.2). */
  get mtu(): number {
    return this.buf.readUInt32BE(this.off + F.BODY);
  }
  set mtu(v: number) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.BODY);
  }

  get identifier(): number {
    return this.buf.readUInt16BE(this.off + F.BODY);
  }
  set identifier(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.BODY);
  }

  get sequence(): number {
    return this.buf.readUInt16BE(this.off + F.SEQUENCE);
  }
  set sequence(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.SEQUENCE);
  }

  /** Neighbor Advertisement R, S, O flags (NA_FLAG_*). */
  get naFlags(): number {
    return this.buf[this.off + F.BODY];
  }

  /** Neighbor Solicitation / Advertisement target address offset (16 bytes). */
  get targetOffset(): number {
    return this.off + F.TARGET;
  }

  get payloadOffset(): number {
    return this.off + F.END;
  }
}

/**
 * The ICMPv6 checksum field value for the message buf[off, off + len) carried in the IPv6 packet whose header is at
 * ipOff (its source and destination feed the pseudo-header), computed with the checksum field taken as zero.
 */
export function icmpv6Checksum(buf: Buffer, ipOff: number, off: number, len: number): number {
  let sum = pseudoHeaderSum6(buf, ipOff + IPV6_SOURCE_OFFSET, ipOff + IPV6_DESTINATION_OFFSET, len, IPPROTO_ICMPV6);
  sum = onesComplementSum(buf, off, off + F.CHECKSUM, sum);
  return internetChecksum(buf, off + F.CHECKSUM + 2, off + len, sum);
}

/** Validates the ICMPv6 message buf[off, off + len) of the IPv6 packet at ipOff, checksum included. */
export function checkIcmpv6(buf: Buffer, ipOff: number, off: number, len: number): Icmpv6Problem | undefined {
  if (off < 0 || len < ICMPV6_HEADER_LEN || off + len > buf.length) return 'truncated';
  if (icmpv6Checksum(buf, ipOff, off, len) !== buf.readUInt16BE(off + F.CHECKSUM)) return 'bad-checksum';
  return undefined;
}

export interface Icmpv6Repr {
  type: number;
  code: number;
  /** Echo request / reply. */
  identifier?: number;
  sequence?: number;
  /** Packet Too Big. */
  mtu?: number;
  /** Neighbor Solicitation / Advertisement. */
  target?: IPv6;
  /** Neighbor Advertisement R/S/O flags (NA_FLAG_*). */
  flags?: number;
  /** Source (NS) or target (NA) link-layer address option. */
  linkLayer?: Mac;
  /** Bytes after the 8-byte header (for ND messages: the target and options). */
  payloadLength: number;
}

/** Parses the ICMPv6 message of the IPv6 packet at ipOff (control path, tests); throws WireError. */
export function parseIcmpv6(buf: Buffer, ipOff: number, off: number, len: number): Icmpv6Repr {
  const problem = checkIcmpv6(buf, ipOff, off, len);
  if (problem) throw new WireError('icmpv6', problem);
  const v = new Icmpv6View(buf, off);
  const repr: Icmpv6Repr = { type: v.type, code: v.code, payloadLength: len - ICMPV6_HEADER_LEN };
  if (repr.type === ICMPV6_ECHO_REQUEST || repr.type === ICMPV6_ECHO_REPLY) {
    repr.identifier = v.identifier;
    repr.sequence = v.sequence;
  } else if (repr.type === ICMPV6_PACKET_TOO_BIG) {
    repr.mtu = v.mtu;
  } else if (repr.type === ICMPV6_NEIGHBOR_SOLICITATION || repr.type === ICMPV6_NEIGHBOR_ADVERTISEMENT) {
    if (len < ND_MESSAGE_LEN) throw new WireError('icmpv6', 'truncated');
    repr.target = readIPv6(buf, off + F.TARGET);
    if (repr.type === ICMPV6_NEIGHBOR_ADVERTISEMENT) repr.flags = v.naFlags & (NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
    const want = repr.type === ICMPV6_NEIGHBOR_SOLICITATION ? ND_OPTION_SOURCE_LL : ND_OPTION_TARGET_LL;
    const at = findLinkLayerOption(buf, off + ND_MESSAGE_LEN, off + len, want);
    if (at === -2) throw new WireError('icmpv6', 'bad-option');
    if (at >= 0) repr.linkLayer = readMac(buf, at + 2);
  }
  return repr;
}

/**
 * Writes the ICMPv6 header and fills the checksum; the payload must already follow it, and the IPv6 header at ipOff
 * must hold the addresses. ND messages: write the target with writeIPv6 and options yourself, payloadLength covers them.
 */
export function emitIcmpv6(repr: Icmpv6Repr, buf: Buffer, ipOff: number, off: number): number {
  const v = new Icmpv6View(buf, off);
  v.type = repr.type;
  v.code = repr.code;
  if (repr.type === ICMPV6_PACKET_TOO_BIG) v.mtu = repr.mtu ?? 0;
  else if (repr.type === ICMPV6_ECHO_REQUEST || repr.type === ICMPV6_ECHO_REPLY) {
    v.identifier = repr.identifier ?? 0;
    v.sequence = repr.sequence ?? 0;
  } else if (repr.type === ICMPV6_NEIGHBOR_ADVERTISEMENT) buf.writeUInt32BE(((repr.flags ?? 0) << 24) >>> 0, off + F.BODY);
  else buf.writeUInt32BE(0, off + F.BODY);
  if (repr.target !== undefined) writeIPv6(buf, off + F.TARGET, repr.target);
  v.checksum = icmpv6Checksum(buf, ipOff, off, ICMPV6_HEADER_LEN + repr.payloadLength);
  return ICMPV6_HEADER_LEN;
}

/**
 * Scans ND options in buf[start, end) for one of `type` (RFC 4861 4.6): returns its offset, -1 when absent, -2 when
 * an option has length 0 or runs past the end (the message must then be dropped, 7.1.1). Bounded by the bytes.
 */
export function findLinkLayerOption(buf: Buffer, start: number, end: number, type: number): number {
  let found = -1;
  for (let at = start; at < end; ) {
    if (at + 2 > end) return -2;
    const optLen = buf[at + 1] * 8;
    if (optLen === 0 || at + optLen > end) return -2;
    if (buf[at] === type && found < 0 && optLen >= ND_LL_OPTION_LEN) found = at;
    at += optLen;
  }
  return found;
}

const upper = new Ipv6UpperLayer();

/**
 * Whether the IPv6 packet at off (checkIpv6 passed) may be answered with an ICMPv6 error of `type` (RFC 4443 2.4 (e)):
 * not about an ICMPv6 error or a Redirect (e.1, e.2; a fragment whose upper layer cannot be seen but is ICMPv6 counts
 * as one, to be safe), not to a multicast destination unless Packet Too Big (e.3), and not from the unspecified or a
 * multicast address (e.6: they name no single node). A chain that cannot be walked is not answered either.
 */
export function icmpv6ErrorAllowed(buf: Buffer, off: number, type: number): boolean {
  const source0 = buf.readUInt32BE(off + IPV6_SOURCE_OFFSET);
  if (source0 >>> 24 === 0xff) return false;
  if (
    source0 === 0 &&
    buf.readUInt32BE(off + IPV6_SOURCE_OFFSET + 4) === 0 &&
    buf.readUInt32BE(off + IPV6_SOURCE_OFFSET + 8) === 0 &&
    buf.readUInt32BE(off + IPV6_SOURCE_OFFSET + 12) === 0
  ) {
    return false;
  }
  if (buf[off + IPV6_DESTINATION_OFFSET] === 0xff && type !== ICMPV6_PACKET_TOO_BIG) return false;
  if (walkIpv6(buf, off, upper) !== undefined) return false;
  if (upper.protocol === IPPROTO_ICMPV6) {
    if (upper.fragmentOffset !== 0) return false;
    const end = off + IPV6_HEADER_LEN + buf.readUInt16BE(off + 4);
    if (upper.offset >= end) return false;
    const t = buf[upper.offset];
    if (t < 128 || t === ICMPV6_REDIRECT) return false;
  }
  return true;
}

/**
 * Writes a complete IPv6 packet into out at outOff: an ICMPv6 error of `type` / `code` (Destination Unreachable, or
 * Packet Too Big with `mtu`, RFC 4443 3.1, 3.2) from the 16-byte address at from[fromOff] to the original's source,
 * quoting the original packet (original[originalOff, originalOff + originalLen)) as far as the reply stays within
 * 1280 bytes. `out` may be the original's own buffer with outOff = originalOff - 48 (in the headroom): the quote does
 * not move then, and the addresses are read before the header is written. The caller checks icmpv6ErrorAllowed.
 * Returns the reply's length.
 */
export function emitIcmpv6Error(
  out: Buffer,
  outOff: number,
  type: number,
  code: number,
  param: number,
  from: Buffer,
  fromOff: number,
  original: Buffer,
  originalOff: number,
  originalLen: number,
): number {
  const quoteLen = Math.min(originalLen, ICMPV6_ERROR_MAX_QUOTE);
  const icmpOff = outOff + IPV6_HEADER_LEN;
  const quoteOff = icmpOff + ICMPV6_HEADER_LEN;
  if (out !== original || quoteOff !== originalOff) {
    // Copy the original's source first: the quote may overwrite it when out is the original's buffer.
    original.copy(out, quoteOff, originalOff, originalOff + quoteLen);
  }
  // The destination is the original's source, now also at quoteOff + 8 in out.
  writeIpv6Header(out, outOff, IPPROTO_ICMPV6, ICMPV6_HEADER_LEN + quoteLen, ICMPV6_ERROR_HOP_LIMIT, from, fromOff, out, quoteOff + IPV6_SOURCE_OFFSET);
  out[icmpOff + F.TYPE] = type;
  out[icmpOff + F.CODE] = code;
  out.writeUInt32BE(param >>> 0, icmpOff + F.BODY);
  out.writeUInt16BE(0, icmpOff + F.CHECKSUM);
  out.writeUInt16BE(icmpv6Checksum(out, outOff, icmpOff, ICMPV6_HEADER_LEN + quoteLen), icmpOff + F.CHECKSUM);
  return IPV6_HEADER_LEN + ICMPV6_HEADER_LEN + quoteLen;
}

/**
 * Validates a Neighbor Solicitation in the IPv6 packet at ipOff whose ICMPv6 message is buf[off, off + len) (RFC 4861
 * 7.1.1): hop limit 255, code 0, checksum, 24 bytes or more, target not multicast, options well formed, and from the
 * unspecified address only to a solicited-node multicast address and without a source link-layer option.
 * Returns the offset of the source link-layer option's MAC (-1 when there is none) or the problem.
 */
export function checkNeighborSolicitation(buf: Buffer, ipOff: number, off: number, len: number): number | NeighborSolicitationProblem {
  if (len < ND_MESSAGE_LEN || off + len > buf.length) return 'truncated';
  if (buf[ipOff + 7] !== ND_HOP_LIMIT) return 'bad-hop-limit';
  if (buf[off + F.CODE] !== 0) return 'bad-code';
  if (icmpv6Checksum(buf, ipOff, off, len) !== buf.readUInt16BE(off + F.CHECKSUM)) return 'bad-checksum';
  if (buf[off + F.TARGET] === 0xff) return 'multicast-target';
  const option = findLinkLayerOption(buf, off + ND_MESSAGE_LEN, off + len, ND_OPTION_SOURCE_LL);
  if (option === -2) return 'bad-option';
  const s = ipOff + IPV6_SOURCE_OFFSET;
  const unspecified = buf.readUInt32BE(s) === 0 && buf.readUInt32BE(s + 4) === 0 && buf.readUInt32BE(s + 8) === 0 && buf.readUInt32BE(s + 12) === 0;
  if (unspecified && (option >= 0 || !isSolicitedNodeMulticast(buf, ipOff + IPV6_DESTINATION_OFFSET))) return 'bad-dad';
  return option >= 0 ? option + 2 : -1;
}

/** ff02::1:ffXX:XXXX (RFC 4291 2.7.1), the address a Neighbor Solicitation for a unicast address goes to. */
export function isSolicitedNodeMulticast(buf: Buffer, off: number): boolean {
  return (
    buf.readUInt32BE(off) === 0xff020000 && buf.readUInt32BE(off + 4) === 0 && buf.readUInt32BE(off + 8) === 1 && buf[off + 12] === 0xff
  );
}

/** The all-nodes multicast address ff02::1 (RFC 4291 2.7.1), destination of an NA answering a DAD probe. */
const ALL_NODES = Buffer.from('ff020000000000000000000000000001', 'hex');

/** Bytes a Neighbor Advertisement with a target link-layer option takes: IPv6 header, 24-byte message, 8-byte option. */
export const NEIGHBOR_ADVERTISEMENT_LEN = IPV6_HEADER_LEN + ND_MESSAGE_LEN + ND_LL_OPTION_LEN;

/**
 * Turns the Neighbor Solicitation at ipOff (validated by checkNeighborSolicitation) into the Neighbor Advertisement
 * answering it, in place (RFC 4861 7.2.4): from the target (our address) to the solicitation's source, or to ff02::1
 * without the S flag when that source is unspecified (duplicate address detection); flags Solicited and Override,
 * hop limit 255, and a target link-layer option carrying `mac` when `withOption` (it must be for a multicast
 * solicitation; the caller leaves it out only when the bytes have no room, for a unicast one). Returns the packet length.
 */
export function answerNeighborSolicitation(buf: Buffer, ipOff: number, mac: Mac, withOption: boolean): number {
  const icmpOff = ipOff + IPV6_HEADER_LEN;
  const s = ipOff + IPV6_SOURCE_OFFSET;
  const unspecified = buf.readUInt32BE(s) === 0 && buf.readUInt32BE(s + 4) === 0 && buf.readUInt32BE(s + 8) === 0 && buf.readUInt32BE(s + 12) === 0;
  const payloadLength = ND_MESSAGE_LEN + (withOption ? ND_LL_OPTION_LEN : 0);
  // source := target, destination := the asker (or all nodes): the header reads the addresses before writing.
  if (unspecified) writeIpv6Header(buf, ipOff, IPPROTO_ICMPV6, payloadLength, ND_HOP_LIMIT, buf, icmpOff + F.TARGET, ALL_NODES, 0);
  else writeIpv6Header(buf, ipOff, IPPROTO_ICMPV6, payloadLength, ND_HOP_LIMIT, buf, icmpOff + F.TARGET, buf, s);
  buf[icmpOff + F.TYPE] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
  buf[icmpOff + F.CODE] = 0;
  buf.writeUInt32BE((((unspecified ? 0 : NA_FLAG_SOLICITED) | NA_FLAG_OVERRIDE) << 24) >>> 0, icmpOff + F.BODY);
  if (withOption) {
    const opt = icmpOff + ND_MESSAGE_LEN;
    buf[opt] = ND_OPTION_TARGET_LL;
    buf[opt + 1] = 1;
    writeMac(buf, opt + 2, mac);
  }
  buf.writeUInt16BE(0, icmpOff + F.CHECKSUM);
  buf.writeUInt16BE(icmpv6Checksum(buf, ipOff, icmpOff, payloadLength), icmpOff + F.CHECKSUM);
  return IPV6_HEADER_LEN + payloadLength;
}
