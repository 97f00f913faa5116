// Longest-prefix match over IPv4 routes: one hash map per prefix length in use, probed from the longest.
// A lookup costs one map probe per distinct prefix length (at most 33), whatever the number of routes:
// a cluster of 10,000 nodes with /24 leases is one probe.
import { type Cidr, type IPv4, prefixMask } from '../wire/address';

export class RouteTable<T> {
  private readonly byLength = new Map<number, Map<number, T>>();
  /** Prefix lengths in use, longest first. */
  private lengths: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  set(prefix: Cidr, value: T): void {
    let table = this.byLength.get(prefix.prefixLength);
    if (table === undefined) {
      table = new Map();
      this.byLength.set(prefix.prefixLength, table);
      this.lengths = [...this.byLength.keys()].sort((a, b) => b - a);
    }
    if (!table.has(prefix.address)) this.count++;
    table.set(prefix.address, value);
  }

  delete(prefix: Cidr): boolean {
    const table = this.byLength.get(prefix.prefixLength);
    if (table === undefined || !table.delete(prefix.address)) return false;
    this.count--;
    if (table.size === 0) {
      this.byLength.delete(prefix.prefixLength);
      this.lengths = [...this.byLength.keys()].sort((a, b) => b - a);
    }
    return true;
  }

  lookup(ip: IPv4): T | undefined {
    const lengths = this.lengths;
    for (let i = 0; i < lengths.length; i++) {
      const len = lengths[i];
      const hit = this.byLength.get(len)!.get((ip & prefixMask(len)) >>> 0);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  *entries(): IterableIterator<[Cidr, T]> {
    for (const len of this.lengths) {
      for (const [address, value] of this.byLength.get(len)!) yield [{ address, prefixLength: len }, value];
    }
  }
}
