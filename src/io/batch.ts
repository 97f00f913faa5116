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
  count = 0;

  constructor(slab: Buffer, capacity: number) {
    this.slab = slab;
    this.capacity = capacity;
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.addrs = new Uint32Array(capacity);
    this.ports = new Uint16Array(capacity);
  }

  /** Appends a packet; the caller guarantees count < capacity. */
  push(offset: number, length: number, addr = 0, port = 0): void {
    const i = this.count++;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    this.addrs[i] = addr;
    this.ports[i] = port;
  }
}
