// IPv6 addresses in two shapes, one per side of vxtun:
//   - the control plane (config, leases, tables) holds an address as a bigint: 128 bits, exact, hashable as a Map key,
//     with masks and arithmetic for subnet allocation;
//   - the data path never makes a bigint per packet: it reads an address from the packet as four unsigned 32-bit words
//     (most significant first, network order) and compares words (ipv6Word, ipv6WordsEqual).
// Text follows RFC 4291 section 2.2 on input and RFC 5952 (lower case, longest zero run as "::") on output.

export type IPv6 = bigint;

export interface Cidr6 {
  readonly address: IPv6; // network address (host bits cleared)
  readonly prefixLength: number; // 0-128
}

export const IPV6_ADDRESS_LEN = 16;
const ALL_ONES = (1n << 128n) - 1n;

/** Parses an IPv6 address in any RFC 4291 text form, including "::", "::ffff:192.0.2.1". Throws on anything else. */
export function parseIPv6(text: string): IPv6 {
  const fail = (): never => {
    throw new Error(`invalid IPv6 address "${text}"`);
  };
  if (text.length === 0 || text.length > 45 || text.includes('%')) fail();
  const halves = text.split('::');
  if (halves.length > 2) fail();
  const groupsOf = (part: string): number[] => {
    if (part === '') return [];
    const pieces = part.split(':');
    const groups: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(piece);
        if (v4 === null) fail();
        const b = v4!.slice(1).map(Number);
        if (b.some((x) => x > 255)) fail();
        groups.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) fail();
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  let groups: number[];
  if (halves.length === 2) {
    if (head.length + tail.length > 7) fail();
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) fail();
    groups = head;
  }
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

/** RFC 5952 text: lower-case hex, leading zeros dropped, the longest run (2 groups or more) of zero groups as "::". */
export function formatIPv6(ip: IPv6): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

export function isIPv6(text: string): boolean {
  try {
    parseIPv6(text);
    return true;
  } catch {
    return false;
  }
}

/** The mask of a prefix length 0-128 as a bigint. */
export function prefixMask6(prefixLength: number): bigint {
  return prefixLength === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLength)) & ALL_ONES;
}

/** Parses "fd00:10:244::/56". Host bits must be zero unless `allowHostBits` (then they are cleared). */
export function parseCidr6(text: string, allowHostBits = false): Cidr6 {
  const slash = text.lastIndexOf('/');
  if (slash < 0) throw new Error(`invalid IPv6 CIDR "${text}": expected ADDRESS/PREFIX`);
  const address = parseIPv6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) throw new Error(`invalid IPv6 CIDR "${text}": prefix must be 0-128`);
  const prefixLength = Number(lenText);
  const network = address & prefixMask6(prefixLength);
  if (network !== address && !allowHostBits) {
    throw new Error(`invalid IPv6 CIDR "${text}": host bits set (did you mean ${formatIPv6(network)}/${prefixLength}?)`);
  }
  return { address: network, prefixLength };
}

export function formatCidr6(cidr: Cidr6): string {
  return `${formatIPv6(cidr.address)}/${cidr.prefixLength}`;
}

export function cidr6Contains(cidr: Cidr6, ip: IPv6): boolean {
  return (ip & prefixMask6(cidr.prefixLength)) === cidr.address;
}

export function cidr6Equals(a: Cidr6, b: Cidr6): boolean {
  return a.address === b.address && a.prefixLength === b.prefixLength;
}

/** Reads 16 bytes at `offset` as an address (control path: allocates a bigint). */
export function readIPv6(buf: Buffer, offset: number): IPv6 {
  return (buf.readBigUInt64BE(offset) << 64n) | buf.readBigUInt64BE(offset + 8);
}

export function writeIPv6(buf: Buffer, offset: number, ip: IPv6): void {
  buf.writeBigUInt64BE(ip >> 64n, offset);
  buf.writeBigUInt64BE(ip & 0xffffffffffffffffn, offset + 8);
}

/** Word `index` (0 = most significant) of an address as an unsigned 32-bit number. */
export function ipv6Word(ip: IPv6, index: number): number {
  return Number((ip >> BigInt(96 - 32 * index)) & 0xffffffffn);
}

/** The four words of an address, most significant first: the data path's shape (see the file comment). */
export function ipv6Words(ip: IPv6): [number, number, number, number] {
  return [ipv6Word(ip, 0), ipv6Word(ip, 1), ipv6Word(ip, 2), ipv6Word(ip, 3)];
}

/** The address whose words are w0..w3 (most significant first). */
export function ipv6FromWords(w0: number, w1: number, w2: number, w3: number): IPv6 {
  return (BigInt(w0 >>> 0) << 96n) | (BigInt(w1 >>> 0) << 64n) | (BigInt(w2 >>> 0) << 32n) | BigInt(w3 >>> 0);
}

/** Does the address at buf[offset..offset+16] equal `words`? No allocation. */
export function ipv6WordsEqual(buf: Buffer, offset: number, words: ArrayLike<number>): boolean {
  return (
    buf.readUInt32BE(offset) === words[0] &&
    buf.readUInt32BE(offset + 4) === words[1] &&
    buf.readUInt32BE(offset + 8) === words[2] &&
    buf.readUInt32BE(offset + 12) === words[3]
  );
}

/** fe80::/10, the link-local unicast block (RFC 4291 section 2.5.6): never routed, never an underlay or pod address. */
export const LINK_LOCAL6: Cidr6 = { address: 0xfe80n << 112n, prefixLength: 10 };
/** ff00::/8, multicast (RFC 4291 section 2.7). */
export const MULTICAST6: Cidr6 = { address: 0xffn << 120n, prefixLength: 8 };
/** ::1 */
export const LOOPBACK6: IPv6 = 1n;
/** ::ffff:0:0/96, IPv4-mapped (RFC 4291 section 2.5.5.2): an IPv4 address in IPv6 clothing, not an IPv6 underlay. */
export const V4_MAPPED6: Cidr6 = { address: 0xffffn << 32n, prefixLength: 96 };

/**
 * A 30-bit hash of an address's four words, for tables the data path probes without making a bigint (route-table6.ts,
 * vtep-registry.ts): it stays a V8 small integer, so a Map keyed by it boxes nothing. FNV-1a style mixing.
 */
export function hashIPv6Words(w0: number, w1: number, w2: number, w3: number): number {
  let h = 0x811c9dc5;
  h = Math.imul(h ^ w0, 0x01000193);
  h = Math.imul(h ^ w1, 0x01000193);
  h = Math.imul(h ^ w2, 0x01000193);
  h = Math.imul(h ^ w3, 0x01000193);
  h ^= h >>> 15;
  return h & 0x3fffffff;
}
