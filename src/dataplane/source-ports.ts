// Source-port entropy for VXLAN (RFC 7348 section 5; the kernel does it too): the outer UDP source port follows a
// hash of the inner flow, so that ECMP routers on the underlay spread flows over their paths. A user-space socket
// sends from one bound port, so we keep a few sockets on different ephemeral ports and send each flow through the
// socket its hash picks. One flow always leaves from one port (no reordering); each socket still sends in batches.
import { PacketBatch } from '../io/batch';
import type { DatagramSocket } from '../io/types';
import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4';

export class SourcePorts {
  private readonly batches: PacketBatch[];
  /** For each entry of a per-socket batch, its index in the batch being sent. */
  private readonly origins: Uint16Array[];

  constructor(
    readonly senders: readonly DatagramSocket[],
    slab: Buffer,
    capacity: number,
  ) {
    if (senders.length === 0 || senders.length > 256) throw new Error(`between 1 and 256 sending sockets, got ${senders.length}`);
    this.batches = senders.map(() => new PacketBatch(slab, capacity));
    this.origins = senders.map(() => new Uint16Array(capacity));
  }

  /** The sender for the inner IPv4 packet at off: a hash of addresses, protocol and (first fragments) ports. */
  pick(slab: Buffer, off: number): number {
    const n = this.senders.length;
    if (n === 1) return 0;
    let h = Math.imul(slab.readUInt32BE(off + 12) ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ slab.readUInt32BE(off + 16) ^ (h >>> 13), 0xc2b2ae35);
    const protocol = slab[off + 9];
    h ^= protocol;
    const firstFragment = (slab.readUInt16BE(off + 6) & 0x1fff) === 0;
    if ((protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) && firstFragment) {
      h = Math.imul(h ^ slab.readUInt32BE(off + (slab[off] & 0x0f) * 4), 0x27d4eb2f);
    }
    h ^= h >>> 16;
    return (h >>> 0) % n;
  }

  /**
   * The sender for the inner IPv6 packet at off: a hash of both addresses, the flow label and the first next header,
   * with the ports when that is TCP or UDP directly (RFC 6438 lets the flow label stand for the rest).
   */
  pick6(slab: Buffer, off: number): number {
    const n = this.senders.length;
    if (n === 1) return 0;
    let h = slab.readUInt32BE(off) & 0xfffff;
    for (let at = off + 8; at < off + 40; at += 4) h = Math.imul(h ^ slab.readUInt32BE(at) ^ (h >>> 13), 0x85ebca6b);
    const next = slab[off + 6];
    h ^= next;
    if (next === IPPROTO_TCP || next === IPPROTO_UDP) h = Math.imul(h ^ slab.readUInt32BE(off + 40), 0x27d4eb2f);
    h ^= h >>> 16;
    return (h >>> 0) % n;
  }

  /** Sends batch entry i through senders[which[i]]; sets sent[i] to 1 for what the kernel took; returns that count. */
  send(batch: PacketBatch, which: Uint8Array, sent: Uint8Array): number {
    sent.fill(0, 0, batch.count);
    if (this.senders.length === 1) {
      const n = this.senders[0].send(batch);
      sent.fill(1, 0, n);
      return n;
    }
    for (const b of this.batches) b.count = 0;
    for (let i = 0; i < batch.count; i++) {
      const k = which[i];
      this.origins[k][this.batches[k].count] = i;
      this.batches[k].push(batch.offsets[i], batch.lengths[i], batch.addrs[i], batch.ports[i]);
    }
    let total = 0;
    for (let k = 0; k < this.senders.length; k++) {
      const b = this.batches[k];
      if (b.count === 0) continue;
      const n = this.senders[k].send(b);
      for (let j = 0; j < n; j++) sent[this.origins[k][j]] = 1;
      total += n;
    }
    return total;
  }
}
