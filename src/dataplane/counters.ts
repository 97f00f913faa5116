// What the data plane did, counted: packets and bytes at each of the four doors, batch sizes, and every drop by
// stage and reason ("route" / "no-match", "vxlan" / "wrong-vni"). Counting never allocates after a reason's first use.

export class DropCounters {
  private readonly byStage = new Map<string, Map<string, number>>();
  /** The most recent drop, for the packet tracer to name the reason without hooks in every stage. */
  lastStage = '';
  lastReason = '';

  count(stage: string, reason: string, n = 1): void {
    this.lastStage = stage;
    this.lastReason = reason;
    let reasons = this.byStage.get(stage);
    if (reasons === undefined) {
      reasons = new Map();
      this.byStage.set(stage, reasons);
    }
    reasons.set(reason, (reasons.get(reason) ?? 0) + n);
  }

  get(stage: string, reason: string): number {
    return this.byStage.get(stage)?.get(reason) ?? 0;
  }

  get total(): number {
    let sum = 0;
    for (const reasons of this.byStage.values()) for (const n of reasons.values()) sum += n;
    return sum;
  }

  /** Flat view, "stage/reason" -> count, for status output and metrics. */
  toJSON(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [stage, reasons] of this.byStage) for (const [reason, n] of reasons) out[`${stage}/${reason}`] = n;
    return out;
  }
}

/** Packets and bytes through one door of the data plane. */
export class Flow {
  packets = 0;
  bytes = 0;

  add(bytes: number): void {
    this.packets++;
    this.bytes += bytes;
  }
}

/** How full the batches were: bucket i counts batches of i packets. */
export class BatchSizes {
  readonly buckets: Uint32Array;

  constructor(maxBatch: number) {
    this.buckets = new Uint32Array(maxBatch + 1);
  }

  record(size: number): void {
    this.buckets[size]++;
  }

  get mean(): number {
    let batches = 0;
    let packets = 0;
    for (let i = 1; i < this.buckets.length; i++) {
      batches += this.buckets[i];
      packets += i * this.buckets[i];
    }
    return batches === 0 ? 0 : packets / batches;
  }
}

export class Counters {
  /** Read from the TUN: the kernel routed these into the overlay. */
  readonly tunIn = new Flow();
  /** Encapsulated and handed to the underlay socket. */
  readonly underlayOut = new Flow();
  /** Received from the underlay socket. */
  readonly underlayIn = new Flow();
  /** Decapsulated and written to the TUN. */
  readonly tunOut = new Flow();
  arpReplies = 0;
  /** Neighbor Solicitations for our v6 VTEP address answered (the IPv6 ARP replies). */
  neighborAdvertisements = 0;
  /** ICMP and ICMPv6 errors we wrote back into the TUN. */
  icmpErrors = 0;
  /** Busy-poll rounds that found packets (EngineOptions.busyPollUs): wake-ups the scheduler did not have to make. */
  busyPollHits = 0;
  /** UDP GSO sends the kernel refused (EIO/EINVAL); their segments went one by one (not drops). */
  gsoFallbacks = 0;
  /** Underlay destinations sending one by one now, waiting to try GSO again (gso-fallback.ts). */
  gsoFallbackPeers = 0;
  readonly drops = new DropCounters();
  readonly outboundBatches: BatchSizes;
  readonly inboundBatches: BatchSizes;

  constructor(maxBatch: number) {
    this.outboundBatches = new BatchSizes(maxBatch);
    this.inboundBatches = new BatchSizes(maxBatch);
  }

  toJSON(): Record<string, unknown> {
    return {
      tunIn: { ...this.tunIn },
      underlayOut: { ...this.underlayOut },
      underlayIn: { ...this.underlayIn },
      tunOut: { ...this.tunOut },
      arpReplies: this.arpReplies,
      neighborAdvertisements: this.neighborAdvertisements,
      icmpErrors: this.icmpErrors,
      gsoFallbacks: this.gsoFallbacks,
      gsoFallbackPeers: this.gsoFallbackPeers,
      drops: this.drops.toJSON(),
      meanBatch: { outbound: this.outboundBatches.mean, inbound: this.inboundBatches.mean },
    };
  }
}
