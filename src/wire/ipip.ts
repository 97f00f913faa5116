// IP-in-IP (RFC 2003): an outer IPv4 header with protocol 4 in front of the unchanged inner IPv4 packet. A raw
// socket receive includes the outer header, so the engine validates both; on send the kernel writes the outer one.
import type { IPv4 } from './address';
import { WireError } from './errors';
import { IPPROTO_IPIP, IPV4_HEADER_LEN, Ipv4View, checkIpv4, emitIpv4, type Ipv4Problem } from './ipv4';

const F = {
  OUTER: 0,
  INNER: IPV4_HEADER_LEN, // when the outer header carries no options
} as const;

/** Outer IPv4 header: overlay MTU = underlay MTU - 20. */
export const IPIP_OVERHEAD = F.INNER - F.OUTER;
export const IPIP_HEADER_LEN = IPIP_OVERHEAD;

export type IpipProblem = `outer-${Ipv4Problem}` | 'not-ipip' | `inner-${Ipv4Problem}`;

const outerView = new Ipv4View();

/** Validates an IP-in-IP packet buf[off, off + len): the outer header, protocol 4, and the inner header. */
export function checkIpip(buf: Buffer, off: number, len: number): IpipProblem | undefined {
  const outerProblem = checkIpv4(buf, off, len);
  if (outerProblem) return `outer-${outerProblem}`;
  const outer = outerView.wrap(buf, off);
  if (outer.protocol !== IPPROTO_IPIP) return 'not-ipip';
  const innerProblem = checkIpv4(buf, outer.payloadOffset, outer.payloadLength);
  if (innerProblem) return `inner-${innerProblem}`;
  return undefined;
}

/** Offset of the inner IPv4 packet (after the outer header and its options). */
export function ipipInnerOffset(buf: Buffer, off: number): number {
  return outerView.wrap(buf, off).payloadOffset;
}

export interface IpipOuterRepr {
  source: IPv4;
  destination: IPv4;
  ttl?: number;
  identification?: number;
}

/**
 * Writes the outer header at off for the inner packet already at off + 20 (its totalLength gives the size).
 * As RFC 2003 3.1 asks, DSCP/ECN and Don't Fragment are copied from the inner header. Returns 20.
 */
export function emitIpipOuter(repr: IpipOuterRepr, buf: Buffer, off: number): number {
  const inner = new Ipv4View(buf, off + IPV4_HEADER_LEN);
  return emitIpv4(
    {
      source: repr.source,
      destination: repr.destination,
      protocol: IPPROTO_IPIP,
      payloadLength: inner.totalLength,
      ttl: repr.ttl ?? 64,
      identification: repr.identification ?? 0,
      dscpEcn: inner.dscpEcn,
      dontFragment: inner.dontFragment,
    },
    buf,
    off,
  );
}

export interface IpipRepr {
  outerSource: IPv4;
  outerDestination: IPv4;
  innerOffset: number;
  innerLength: number;
}

export function parseIpip(buf: Buffer, off = 0, len = buf.length - off): IpipRepr {
  const problem = checkIpip(buf, off, len);
  if (problem) throw new WireError('ipip', problem);
  const outer = new Ipv4View(buf, off);
  return {
    outerSource: outer.source,
    outerDestination: outer.destination,
    innerOffset: outer.payloadOffset,
    innerLength: outer.payloadLength,
  };
}
