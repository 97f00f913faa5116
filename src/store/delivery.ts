// Asynchronous, batched delivery of watch events: changes made in one turn of the event loop reach a
// watcher as one batch, never from inside the call that made them (so a handler may write to the store).

import type { Watch, WatchEvent, WatchHandlers } from './store';

export class WatchDelivery implements Watch {
  private pending: WatchEvent[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    readonly prefix: string,
    private readonly handlers: WatchHandlers,
    private readonly onClose: (watch: WatchDelivery) => void = () => {},
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  matches(key: string): boolean {
    return key.startsWith(this.prefix);
  }

  /** Queues one event; the batch is delivered in a later microtask. */
  push(event: WatchEvent): void {
    if (this.closed) return;
    this.pending.push(event);
    this.schedule();
  }

  resync(): void {
    if (this.closed) return;
    this.pending = [];
    queueMicrotask(() => {
      if (!this.closed) this.handlers.onResync?.();
    });
  }

  connectionChange(connected: boolean, error?: Error): void {
    if (this.closed) return;
    queueMicrotask(() => {
      if (!this.closed) this.handlers.onConnectionChange?.(connected, error);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.onClose(this);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (this.closed || this.pending.length === 0) return;
      const batch = this.pending;
      this.pending = [];
      this.handlers.onEvents(batch);
    });
  }
}

/** The revision an event happened at, for ordering and resuming. */
export function eventRevision(event: WatchEvent): number {
  return event.type === 'put' ? event.kv.modRevision : event.modRevision;
}
