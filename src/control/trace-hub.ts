// Fans the engine's packet journeys out to whoever traces (`vxtun trace` clients), each with its own filter.
// The hub attaches itself to the engine only while it has subscribers: no tracer, no tracing cost.
import type { PacketTracer } from '../dataplane/journeys';
import { type Journey, type TraceFilter, filterMatches } from '../trace/journey';
import { formatIPv4 } from '../wire/address';

export interface TraceSubscription {
  filter: TraceFilter;
  withBytes: boolean;
  onJourney(journey: Journey): void;
}

function summaryMatches(filter: TraceFilter, journey: Journey): boolean {
  const inner = journey.inner;
  if (inner === undefined) return filter.host === undefined && filter.src === undefined && filter.dst === undefined && filter.protocol === undefined;
  if (filter.host !== undefined && inner.src !== formatIPv4(filter.host) && inner.dst !== formatIPv4(filter.host)) return false;
  if (filter.src !== undefined && inner.src !== formatIPv4(filter.src)) return false;
  if (filter.dst !== undefined && inner.dst !== formatIPv4(filter.dst)) return false;
  if (filter.protocol !== undefined && inner.protocol !== filter.protocol) return false;
  return true;
}

export class TraceHub implements PacketTracer {
  private readonly subscriptions = new Set<TraceSubscription>();

  constructor(private readonly attach: (tracer: PacketTracer | undefined) => void) {}

  subscribe(subscription: TraceSubscription): () => void {
    this.subscriptions.add(subscription);
    this.attach(this);
    return () => {
      this.subscriptions.delete(subscription);
      if (this.subscriptions.size === 0) this.attach(undefined);
    };
  }

  get withBytes(): boolean {
    for (const s of this.subscriptions) if (s.withBytes) return true;
    return false;
  }

  wants(buf: Buffer, off: number, len: number): boolean {
    for (const s of this.subscriptions) if (filterMatches(s.filter, buf, off, len)) return true;
    return false;
  }

  /** Called from the engine's loop: a subscriber that throws is detached, never the engine's problem. */
  record(journey: Journey): void {
    for (const s of this.subscriptions) {
      if (!summaryMatches(s.filter, journey)) continue;
      try {
        if (s.withBytes || (journey.packet === undefined && journey.frame === undefined)) s.onJourney(journey);
        else s.onJourney({ ...journey, packet: undefined, frame: undefined });
      } catch {
        this.subscriptions.delete(s);
        if (this.subscriptions.size === 0) this.attach(undefined);
      }
    }
  }
}
