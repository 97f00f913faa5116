// Longest-prefix match over IPv6 routes, without a bigint per packet. As route-table.ts does for IPv4: one table per
// prefix length in use, probed from the longest; a lookup costs one probe per distinct prefix length (at most 129),
// whatever the number of routes (10,000 nodes with /64 leases under one /48 network: one probe, two at most).
//
// A table is keyed by the masked address as four 32-bit words (address6.ts: the data path's shape). JS Maps cannot
// key on four numbers without making a string or a bigint, so each table is a Map from a 30-bit hash of the masked
// words (a small integer: no heap number) to a slot in flat typed arrays, compared word by word (see LengthTable).
// Control-path calls (set, delete, lookup by bigint) may allocate; lookupAt / lookupWords do not.
import { type Cidr6, type IPv6, hashIPv6Words, ipv6Words, prefixMask6 } from '../wire/address6';

/**
 * One prefix length: its mask as words, and the routes of that length in flat arrays. `first` maps the hash of a
 * masked address to its slot; slots sharing a hash are chained through `next` (-1 ends). A probe touches the Map
 * (whose small-integer values sit in its own table), four words of one Uint32Array and one value: no objects to chase.
 */
class LengthTable<T> {
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  private readonly first = new Map<number, number>();
  /** Masked address of slot i at 4*i..4*i+3. */
  private words = new Uint32Array(64);
  private next = new Int32Array(16).fill(-1);
  private readonly values: (T | undefined)[] = [];
  private readonly prefixes: (Cidr6 | undefined)[] = [];
  private readonly free: number[] = [];
  size = 0;

  constructor(readonly prefixLength: number) {
    [this.m0, this.m1, this.m2, this.m3] = ipv6Words(prefixMask6(prefixLength));
  }

  /** The slot of the route covering the address w0..w3 (any host bits), or -1. No allocation. */
  find(w0: number, w1: number, w2: number, w3: number): number {
    const m0 = (w0 & this.m0) >>> 0;
    const m1 = (w1 & this.m1) >>> 0;
    const m2 = (w2 & this.m2) >>> 0;
    const m3 = (w3 & this.m3) >>> 0;
    let slot = this.first.get(hashIPv6Words(m0, m1, m2, m3));
    if (slot === undefined) return -1;
    const words = this.words;
    while (slot >= 0) {
      const at = 4 * slot;
      if (words[at] === m0 && words[at + 1] === m1 && words[at + 2] === m2 && words[at + 3] === m3) return slot;
      slot = this.next[slot];
    }
    return -1;
  }

  value(slot: number): T {
    return this.values[slot] as T;
  }

  /** Adds or replaces; `prefix` has its host bits clear. */
  set(prefix: Cidr6, w0: number, w1: number, w2: number, w3: number, value: T): boolean {
    const existing = this.find(w0, w1, w2, w3);
    if (existing >= 0) {
      this.values[existing] = value;
      return false;
    }
    const slot = this.free.length > 0 ? this.free.pop()! : this.values.length;
    if (slot === this.values.length) {
      this.values.push(undefined);
      this.prefixes.push(undefined);
      if (4 * (slot + 1) > this.words.length) {
        const grown = new Uint32Array(this.words.length * 2);
        grown.set(this.words);
        this.words = grown;
        const next = new Int32Array(this.next.length * 2).fill(-1);
        next.set(this.next);
        this.next = next;
      }
    }
    this.words.set([w0, w1, w2, w3], 4 * slot);
    this.values[slot] = value;
    this.prefixes[slot] = prefix;
    const hash = hashIPv6Words(w0, w1, w2, w3);
    const head = this.first.get(hash);
    this.next[slot] = head ?? -1;
    this.first.set(hash, slot);
    this.size++;
    return true;
  }

  delete(w0: number, w1: number, w2: number, w3: number): boolean {
    const slot = this.find(w0, w1, w2, w3);
    if (slot < 0) return false;
    const hash = hashIPv6Words(w0, w1, w2, w3);
    const head = this.first.get(hash)!;
    if (head === slot) {
      if (this.next[slot] >= 0) this.first.set(hash, this.next[slot]);
      else this.first.delete(hash);
    } else {
      let prev = head;
      while (this.next[prev] !== slot) prev = this.next[prev];
      this.next[prev] = this.next[slot];
    }
    this.next[slot] = -1;
    this.words.fill(0, 4 * slot, 4 * slot + 4);
    this.values[slot] = undefined;
    this.prefixes[slot] = undefined;
    this.free.push(slot);
    this.size--;
    return true;
  }

  *entries(): IterableIterator<[Cidr6, T]> {
    for (let i = 0; i < this.prefixes.length; i++) {
      const prefix = this.prefixes[i];
      if (prefix !== undefined) yield [prefix, this.values[i] as T];
    }
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
    const network = prefix.address & prefixMask6(prefix.prefixLength);
    const [w0, w1, w2, w3] = ipv6Words(network);
    if (table.set({ address: network, prefixLength: prefix.prefixLength }, w0, w1, w2, w3, value)) this.count++;
  }

  /** Removes the route for exactly `prefix`; false when there was none. */
  delete(prefix: Cidr6): boolean {
    const table = this.byLength.get(prefix.prefixLength);
    if (table === undefined) return false;
    const [w0, w1, w2, w3] = ipv6Words(prefix.address & prefixMask6(prefix.prefixLength));
    if (!table.delete(w0, w1, w2, w3)) return false;
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
      const table = tables[i];
      const slot = table.find(w0, w1, w2, w3);
      if (slot >= 0) return table.value(slot);
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
    for (const table of this.tables) yield* table.entries();
  }
}
