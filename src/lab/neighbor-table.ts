// The host's neighbor (ARP / NDP) table is one table for all network namespaces, with host-wide limits
// (net.ipv4.neigh.default.gc_thresh1/2/3, default 128/512/1024; ip-sysctl.rst "neigh/default/gc_thresh*").
// A lab of N nodes whose every node talks to every other over the underlay (bgp's full mesh: one BGP session per
// pair) needs about N * N entries: 50 nodes need ~2,500 and overflow the default 1,024 ("neighbour: arp_cache:
// neighbor table overflow!" in dmesg), ARP fails, BGP hold timers expire and etcd stops answering. Real nodes each
// have their own table, so this is the lab's problem alone, fixed here by raising the limits (never lowering them).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const FAMILIES = ['ipv4', 'ipv6'] as const;
/** Entries a lab keeps besides the mesh: the hub, etcd, pods, an outside host. */
const MARGIN = 256;

export interface NeighborLimits {
  gcThresh1: number;
  gcThresh2: number;
  gcThresh3: number;
}

/** The limits that hold `entries` neighbors without garbage collection getting in the way (thresh1 >= entries). */
export function neighborLimitsFor(entries: number): NeighborLimits {
  const wanted = entries + MARGIN;
  return { gcThresh1: wanted, gcThresh2: 2 * wanted, gcThresh3: 4 * wanted };
}

function path(family: (typeof FAMILIES)[number], n: 1 | 2 | 3): string {
  return `/proc/sys/net/${family}/neigh/default/gc_thresh${n}`;
}

/**
 * Raises the host's neighbor table limits (IPv4 and IPv6) so that a lab of `nodes` nodes in full mesh fits, when it
 * would not fit under the soft limit (gc_thresh2) as it is: small labs change nothing, and values already large enough
 * are kept. Returns a sentence saying what changed, or undefined when nothing had to.
 * Throws only when /proc/sys cannot be written (not root).
 */
export function fitNeighborTable(nodes: number): string | undefined {
  const limits = neighborLimitsFor(nodes * (nodes + 1));
  const changed: string[] = [];
  for (const family of FAMILIES) {
    if (!existsSync(path(family, 2))) continue; // a host without IPv6 has no ipv6 table to size
    if (limits.gcThresh1 <= Number(readFileSync(path(family, 2), 'utf8').trim())) continue;
    // thresh3 first when raising: the kernel wants thresh1 <= thresh2 <= thresh3 to stay meaningful.
    for (const [n, value] of [[3, limits.gcThresh3], [2, limits.gcThresh2], [1, limits.gcThresh1]] as const) {
      const file = path(family, n);
      const current = Number(readFileSync(file, 'utf8').trim());
      if (current >= value) continue;
      writeFileSync(file, String(value));
      changed.push(`${family} gc_thresh${n} ${current} -> ${value}`);
    }
  }
  if (changed.length === 0) return undefined;
  return `raised the host's neighbor table limits for ${nodes} nodes in full mesh (one table for all namespaces): ${changed.join(', ')}`;
}
