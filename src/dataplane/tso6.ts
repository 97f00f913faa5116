// TSO for IPv6 (issue 12): a TCP/IPv6 super-packet read from an offload TUN (virtio_net_hdr gso_type
// VIRTIO_NET_HDR_GSO_TCPV6 = 4, linux/virtio_net.h) cut into MSS-sized segments, as tcpSegment (native/offload.cc)
// does for IPv4 and wireguard-go's tun/offload_linux.go gsoSplit does for both: each segment gets the headers, its
// own payload length, sequence number and TCP checksum over the IPv6 pseudo-header (RFC 8200 8.1); FIN and PSH stay on
// the last segment only, CWR on the first only (RFC 3168 6.1.2 via the kernel's tcp_gso_segment). IPv6 has no
// identification to advance and no header checksum. Written in TypeScript over Buffer.copy (memcpy); the checksum
// over each segment is finished by the native completeChecksum (the one that completes the kernel's partial
// checksums): a TypeScript loop over the bytes measured 14x slower than native tcpSegment (bench/micro.ts, "tso").
// The payload bytes are copied once, into the output buffer.
import { completeChecksum } from '../io/segmentation';
import { foldChecksum, pseudoHeaderSum6 } from '../wire/checksum';
import { IPPROTO_TCP6, IPV6_HEADER_LEN } from '../wire/ipv6';

/** virtio_net_hdr gso_type for TCP over IPv6 (linux/virtio_net.h VIRTIO_NET_HDR_GSO_TCPV6). */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/**
 * Splits the TCP/IPv6 super-packet at slab[pkt, pkt + pktLen) (TCP right after the fixed header: csumStart 40)
 * into segments of at most gsoSize payload bytes, written back to back at out[outOff...], each led by
 * prefix[0, prefixLen) (VXLAN + inner Ethernet). Fills segLengths (prefix included); returns the count, or -1 when
 * the packet cannot be segmented (not TCP/IPv6, extension headers, lengths that disagree, no room).
 */
export function tcpSegment6(
  slab: Buffer, pkt: number, pktLen: number, gsoSize: number, csumStart: number,
  out: Buffer, outOff: number, prefix: Buffer, prefixLen: number, segLengths: Uint32Array,
): number {
  if (pktLen < IPV6_HEADER_LEN + 20 || pkt + pktLen > slab.length || slab[pkt] >> 4 !== 6) return -1;
  if (slab[pkt + 6] !== IPPROTO_TCP6 || csumStart !== IPV6_HEADER_LEN) return -1;
  if (IPV6_HEADER_LEN + slab.readUInt16BE(pkt + 4) !== pktLen || gsoSize === 0) return -1;
  const tcp = pkt + IPV6_HEADER_LEN;
  const thl = (slab[tcp + 12] >> 4) * 4;
  const headers = IPV6_HEADER_LEN + thl;
  if (thl < 20 || headers > pktLen) return -1;
  const payload = pktLen - headers;
  const count = payload === 0 ? 1 : Math.ceil(payload / gsoSize);
  if (count > segLengths.length) return -1;
  if (outOff + count * (prefixLen + headers) + payload > out.length) return -1;
  const seq = slab.readUInt32BE(tcp + 4);
  const flags = slab[tcp + 13];
  let at = outOff;
  let done = 0;
  for (let i = 0; i < count; i++) {
    const chunk = Math.min(payload - done, gsoSize);
    if (prefixLen > 0) prefix.copy(out, at, 0, prefixLen);
    const ip = at + prefixLen;
    slab.copy(out, ip, pkt, pkt + headers);
    slab.copy(out, ip + headers, pkt + headers + done, pkt + headers + done + chunk);
    const tcpLen = thl + chunk;
    out.writeUInt16BE(tcpLen, ip + 4);
    const seg = ip + IPV6_HEADER_LEN;
    out.writeUInt32BE((seq + done) >>> 0, seg + 4);
    let segFlags = flags;
    if (i + 1 < count) segFlags &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) segFlags &= ~TCP_CWR;
    out[seg + 13] = segFlags;
    // CHECKSUM_PARTIAL's convention: the field holds the folded pseudo-header sum, completed over the segment.
    out.writeUInt16BE(~foldChecksum(pseudoHeaderSum6(out, ip + 8, ip + 24, tcpLen, IPPROTO_TCP6)) & 0xffff, seg + 16);
    completeChecksum(out, ip, IPV6_HEADER_LEN + tcpLen, IPV6_HEADER_LEN, 16);
    const segLen = prefixLen + headers + chunk;
    segLengths[i] = segLen;
    at += segLen;
    done += chunk;
  }
  return count;
}
