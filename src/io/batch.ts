// A batch of packets in one slab: the unit every I/O call moves (wireguard-go's bufs/sizes, as typed arrays).
// Packet i occupies slab[offsets[i], offsets[i] + lengths[i]). For reads, lengths[i] is set by the caller to the
// capacity available at offsets[i] and overwritten with the received length. addrs/ports hold the peer of a
// datagram (source on receive, destination on send); TUN I/O ignores them.

export class PacketBatch {
  readonly slab: Buffer;
  readonly capacity: number;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly addrs: Uint32Array;
  readonly ports: Uint16Array;
  /** IPv6 peers for family-6 sockets: entry i at 4*i..4*i+3, most significant word first (issue 12 contract). */
  readonly addrs6: Uint32Array;
  count = 0;

  constructor(slab: Buffer, capacity: number) {
    this.slab = slab;
    this.capacity = capacity;
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.addrs = new Uint32Array(capacity);
    this.ports = new Uint16Array(capacity);
    this.addrs6 = new Uint32Array(4 * capacity);
  }

  /** No room for another packet: send or write the batch (or drop and count) before pushing more. */
  get full(): boolean {
    return this.count >= this.capacity;
  }

  /**
   * Appends a packet and returns true, or returns false and changes nothing when the batch is full: a batch never
   * grows past its capacity (a count beyond the tables would make the native call refuse the whole batch).
   */
  push(offset: number, length: number, addr = 0, port = 0): boolean {
    const i = this.count;
    if (i >= this.capacity) return false;
    this.count = i + 1;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    this.addrs[i] = addr;
    this.ports[i] = port;
    return true;
  }
}
