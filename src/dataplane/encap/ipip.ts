// IP-in-IP (RFC 2003) over a raw IPv4 socket for protocol 4: the kernel writes the outer header on send, so the
// inner packet goes out untouched; a raw receive includes the outer header, which we check and skip.
import type { PacketBatch } from '../../io/batch';
import type { IPv4 } from '../../wire/address';
import { IPIP_OVERHEAD, checkIpip, ipipInnerOffset } from '../../wire/ipip';
import type { Counters } from '../counters';
import type { ForwardingTables, Route } from '../tables';
import type { Encapsulation } from './encapsulation';

export class IpipEncapsulation implements Encapsulation {
  readonly name = 'ipip' as const;
  readonly overhead = IPIP_OVERHEAD;
  readonly headroom = 0;

  nextHop = 0;
  readonly nextHopPort = 0;

  /** Nothing to write: the kernel's raw socket adds the outer header. */
  writeHeaders(_buf: Buffer, _off: number, route: Route): boolean {
    this.nextHop = route.gateway;
    return true;
  }

  encapsulate(_slab: Buffer, off: number, len: number, route: Route, _tables: ForwardingTables, out: PacketBatch, counters: Counters): boolean {
    this.nextHop = route.gateway;
    if (out.push(off, len, route.gateway, 0)) return true;
    counters.drops.count('underlay', 'batch-full');
    return false;
  }

  decapsulate(slab: Buffer, off: number, len: number, _source: IPv4, _tables: ForwardingTables, _replies: PacketBatch, counters: Counters): number {
    const problem = checkIpip(slab, off, len);
    if (problem !== undefined) {
      counters.drops.count('ipip', problem);
      return -1;
    }
    return ipipInnerOffset(slab, off);
  }
}
