// A bounded pool of fixed-size packet slots carved from one slab (wireguard-go device/pools.go).
// One slab means the native layer addresses every packet as (slab, byte offset): a batch crosses into C++ as a few
// typed arrays, never as an array of Buffer objects. Slots are indices; `get` returning -1 is backpressure.

/** Bytes kept free in front of every packet so encapsulation writes outer headers in place. */
export const HEADROOM = 64;

export class BufferPool {
  readonly slab: Buffer;
  readonly slotSize: number;
  readonly capacity: number;
  private readonly free: Uint32Array;
  private freeCount: number;
  /** Lowest number of free slots seen: how close the pool came to exhaustion. */
  lowWater: number;

  constructor(capacity: number, slotSize = 2048) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new Error(`pool capacity must be a positive integer, got ${capacity}`);
    if (!Number.isInteger(slotSize) || slotSize <= HEADROOM || slotSize % 8 !== 0) {
      throw new Error(`pool slot size must be a multiple of 8 larger than ${HEADROOM}, got ${slotSize}`);
    }
    this.capacity = capacity;
    this.slotSize = slotSize;
    this.slab = Buffer.alloc(capacity * slotSize);
    this.free = new Uint32Array(capacity);
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.freeCount = capacity;
    this.lowWater = capacity;
  }

  /** Takes a slot; returns its index, or -1 when the pool is exhausted. */
  get(): number {
    if (this.freeCount === 0) return -1;
    const slot = this.free[--this.freeCount];
    if (this.freeCount < this.lowWater) this.lowWater = this.freeCount;
    return slot;
  }

  put(slot: number): void {
    if (this.freeCount >= this.capacity) throw new Error('buffer pool: put of a slot that was not taken');
    this.free[this.freeCount++] = slot;
  }

  /** Byte offset of a slot's first byte in the slab. */
  start(slot: number): number {
    return slot * this.slotSize;
  }

  /** Slot index of a byte offset inside the slab. */
  slotOf(byteOffset: number): number {
    return Math.floor(byteOffset / this.slotSize);
  }

  get available(): number {
    return this.freeCount;
  }

  get inUse(): number {
    return this.capacity - this.freeCount;
  }
}
