// Bulk byte work the profile put in native code: splitting a TCP super-packet into segments with their own
// headers and checksums, and finishing a partial checksum. Pure functions over buffers; no I/O.
import { native } from './native';

/** Most segments one super-packet can make (64 KB at the smallest useful MSS is far fewer; UDP GSO takes 64). */
export const MAX_SEGMENTS = 64;

/**
 * Splits the IPv4/TCP super-packet at slab[pktOff, +pktLen) into segments written back to back at out[outOff...],
 * each led by prefix[prefixOff, +prefixLen) (VXLAN + inner Ethernet, or nothing). Fills segLengths; returns the
 * count, or -1 when the packet cannot be segmented.
 */
export function tcpSegment(
  slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number,
  out: Buffer, outOff: number, prefix: Buffer, prefixOff: number, prefixLen: number, segLengths: Uint32Array,
): number {
  return native().tcpSegment(slab, pktOff, pktLen, hdrLen, gsoSize, csumStart, out, outOff, prefix, prefixOff, prefixLen, segLengths);
}

/** Completes a checksum the kernel left partial (virtio NEEDS_CSUM), in place. */
export function completeChecksum(slab: Buffer, off: number, len: number, csumStart: number, csumOffset: number): void {
  native().completeChecksum(slab, off, len, csumStart, csumOffset);
}
