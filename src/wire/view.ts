// What every header view is: a Buffer and an offset, re-pointable without allocating (smoltcp's Packet<T>,
// gVisor's header types). The hot path keeps one view per header and calls wrap() per packet.

const EMPTY = Buffer.alloc(0);

export class HeaderView {
  buf: Buffer;
  off: number;

  constructor(buf: Buffer = EMPTY, off = 0) {
    this.buf = buf;
    this.off = off;
  }

  wrap(buf: Buffer, off: number): this {
    this.buf = buf;
    this.off = off;
    return this;
  }
}
