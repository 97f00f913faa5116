// Longest-prefix match over IPv6 routes, without a bigint per packet. As route-table.ts does for IPv4: one table per
// prefix length in use, probed from the longest; a lookup costs one probe per distinct prefix length (at most 129),
// whatever the number of routes (10,000 nodes with /64 leases under one /48 network: one probe, two at most).
//
// A table is keyed by the masked address as four 32-bit words (address6.ts: the data path's shape). JS Maps cannot
// key on four numbers without making a string or a bigint, so each table is a Map from a 30-bit hash of the masked
// words (a small integer: no heap number) to the few entries sharing that hash, compared word by word.
// Control-path calls (set, delete, lookup by bigint) may allocate; lookupAt / lookupWords do not.
import { type Cidr6, type IPv6, hashIPv6Words, ipv6Words, prefixMask6 } from '../wire/address6';

interface Entry6<T> {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly prefix: Cidr6;
  value: T;
}

/** One prefix length: its mask as words, and hash -> entries whose masked address hashes there. */
class LengthTable<T> {
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  readonly buckets = new Map<number, Entry6<T>[]>();
  size = 0;

  constructor(readonly prefixLength: number) {
    [this.m0, this.m1, this.m2, this.m3] = ipv6Words(prefixMask6(prefixLength));
  }

  find(w0: number, w1: number, w2: number, w3: number): Entry6<T> | undefined {
    const m0 = (w0 & this.m0) >>> 0;
    const m1 = (w1 & this.m1) >>> 0;
    const m2 = (w2 & this.m2) >>> 0;
    const m3 = (w3 & this.m3) >>> 0;
    const bucket = this.buckets.get(hashIPv6Words(m0, m1, m2, m3));
    if (bucket === undefined) return undefined;
    for (let i = 0; i < bucket.length; i++) {
      const e = bucket[i];
      if (e.w0 === m0 && e.w1 === m1 && e.w2 === m2 && e.w3 === m3) return e;
    }
    return undefined;
  }
}


export class RouteTable6<T> {
  private readonly byLength = new Map<number, LengthTable<T>>();
  /** Tables in use, longest prefix first. */
  private tables: LengthTable<T>[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds or replaces the route for `prefix` (its host bits must be clear, as parseCidr6 leaves them). */
  set(prefix: Cidr6, value: T): void {
    let table = this.byLength.get(prefix.prefixLength);
    if (table === undefined) {
      table = new LengthTable<T>(prefix.prefixLength);
      this.byLength.set(prefix.prefixLength, table);
      this.tables = [...this.byLength.values()].sort((a, b) => b.prefixLength - a.prefixLength);
    }
    const [w0, w1, w2, w3] = ipv6Words(prefix.address & prefixMask6(prefix.prefixLength));
    const existing = table.find(w0, w1, w2, w3);
    if (existing !== undefined) {
      existing.value = value;
      return;
    }
    const hash = hashIPv6Words(w0, w1, w2, w3);
    let bucket = table.buckets.get(hash);
    if (bucket === undefined) {
      bucket = [];
      table.buckets.set(hash, bucket);
    }
    bucket.push({ w0, w1, w2, w3, prefix: { address: prefix.address & prefixMask6(prefix.prefixLength), prefixLength: prefix.prefixLength }, value });
    table.size++;
    this.count++;
  }

  /** Removes the route for exactly `prefix`; false when there was none. */
  delete(prefix: Cidr6): boolean {
    const table = this.byLength.get(prefix.prefixLength);
    if (table === undefined) return false;
    const [w0, w1, w2, w3] = ipv6Words(prefix.address & prefixMask6(prefix.prefixLength));
    const hash = hashIPv6Words(w0, w1, w2, w3);
    const bucket = table.buckets.get(hash);
    if (bucket === undefined) return false;
    const i = bucket.findIndex((e) => e.w0 === w0 && e.w1 === w1 && e.w2 === w2 && e.w3 === w3);
    if (i < 0) return false;
    bucket.splice(i, 1);
    if (bucket.length === 0) table.buckets.delete(hash);
    table.size--;
    this.count--;
    if (table.size === 0) {
      this.byLength.delete(prefix.prefixLength);
      this.tables = [...this.byLength.values()].sort((a, b) => b.prefixLength - a.prefixLength);
    }
    return true;
  }

  /** Longest match for the address given as four words, most significant first. No allocation. */
  lookupWords(w0: number, w1: number, w2: number, w3: number): T | undefined {
    const tables = this.tables;
    for (let i = 0; i < tables.length; i++) {
      const hit = tables[i].find(w0, w1, w2, w3);
      if (hit !== undefined) return hit.value;
    }
    return undefined;
  }

  /** Longest match for the 16-byte address at buf[off] (an IPv6 header's destination is at header + 24). No allocation. */
  lookupAt(buf: Buffer, off: number): T | undefined {
    return this.lookupWords(buf.readUInt32BE(off), buf.readUInt32BE(off + 4), buf.readUInt32BE(off + 8), buf.readUInt32BE(off + 12));
  }

  /** Longest match for a bigint address (control path, tests). */
  lookup(ip: IPv6): T | undefined {
    const [w0, w1, w2, w3] = ipv6Words(ip);
    return this.lookupWords(w0, w1, w2, w3);
  }

  /** Every route, longest prefixes first. */
  *entries(): IterableIterator<[Cidr6, T]> {
    for (const table of this.tables) {
      for (const bucket of table.buckets.values()) for (const e of bucket) yield [e.prefix, e.value];
    }
  }
}
