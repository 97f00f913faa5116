// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
// Sums are kept unfolded while accumulating: a JS number holds integers exactly up to 2^53, so adding 16-bit words
// never loses a carry, and folding happens once at the end.

/** Ones' complement sum of the 16-bit big-endian words in buf[start, end), an odd last byte padded with zero. Unfolded. */
export function onesComplementSum(buf: Buffer, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const evenEnd = end - ((end - start) & 1);
  for (; i < evenEnd; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** Folds an unfolded sum to 16 bits and complements it: the value to store in a checksum field. */
export function foldChecksum(sum: number): number {
  // The first fold uses division because the sum may exceed 32 bits (where >>> would truncate).
  sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Checksum field value for buf[start, end). Over data that already contains a correct checksum, this is 0. */
export function internetChecksum(buf: Buffer, start: number, end: number, initial = 0): number {
  return foldChecksum(onesComplementSum(buf, start, end, initial));
}

/** Unfolded sum of the IPv4 pseudo-header used by UDP and TCP checksums (RFC 768, RFC 793). */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/**
 * New checksum after one 16-bit word of the covered data changes from oldWord to newWord, without re-reading the data.
 * RFC 1624 equation 3, HC' = ~(~HC + ~m + m'): unlike equation 2 it never produces 0xFFFF where a full
 * recomputation gives 0x0000.
 */
export function incrementalUpdate(oldChecksum: number, oldWord: number, newWord: number): number {
  let sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Unfolded sum of the IPv6 pseudo-header (RFC 8200 section 8.1) used by ICMPv6, UDP and TCP over IPv6: the source
 * and destination addresses (16 bytes each, read from the packet), the 32-bit upper-layer length and the upper-layer
 * protocol (the last Next Header, not the first when extension headers are present). No allocation.
 */
export function pseudoHeaderSum6(buf: Buffer, sourceOff: number, destinationOff: number, upperLength: number, protocol: number): number {
  let sum = onesComplementSum(buf, sourceOff, sourceOff + 16);
  sum = onesComplementSum(buf, destinationOff, destinationOff + 16, sum);
  return sum + (upperLength >>> 16) + (upperLength & 0xffff) + protocol;
}
