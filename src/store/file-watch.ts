// The embedded store's watch: it polls the key files (fs.watch only makes it look sooner) and reports what changed
// since its last look, diffing by modRevision. Other processes write the directory, so polling is the one way to
// see every writer; the revision file tells whether anything changed at all, so an idle look reads one small file.

import { watch as watchDirectory, type FSWatcher } from 'node:fs';
import { WatchDelivery, eventRevision } from './delivery';
import { isLive, type Envelope, type LiveEnvelope } from './envelope';
import type { KeyValue, WatchEvent, WatchHandlers } from './store';

/** What a FileWatch needs of its store (FileStore). */
export interface FileWatchSource {
  /** Milliseconds between looks. */
  readonly pollInterval: number;
  readonly keysDirectory: string;
  initForWatch(): Promise<void>;
  readRevision(): Promise<number>;
  readCompacted(): Promise<number>;
  /** Every envelope (tombstones too) whose key starts with `prefix`. */
  readEnvelopes(prefix: string): Promise<Envelope[]>;
  /** A live key past its expiry: turn it into a tombstone (in the background). */
  noticeExpired(key: string, modRevision: number): void;
  isExpired(envelope: { readonly expiresAt?: number }): boolean;
  toKeyValue(envelope: LiveEnvelope): KeyValue;
}

/** A watch that polls the key files and reports what changed since its last look. */
export class FileWatch extends WatchDelivery {
  /** What this watch last saw of each key (tombstones included), to diff the next look against. */
  private readonly seen = new Map<string, Seen>();
  private lastRevision = -1;
  private timer?: NodeJS.Timeout;
  private early?: NodeJS.Timeout;
  private watcher?: FSWatcher;
  private running = false;
  private again = false;
  private failing = false;

  constructor(
    private readonly store: FileWatchSource,
    prefix: string,
    private readonly fromRevision: number,
    handlers: WatchHandlers,
    onClose: (watch: FileWatch) => void,
  ) {
    super(prefix, handlers, (w) => {
      this.stop();
      onClose(w as FileWatch);
    });
  }

  start(): void {
    void this.begin();
  }

  private async begin(): Promise<void> {
    try {
      await this.store.initForWatch();
      if (this.isClosed) return;
      const revision = await this.store.readRevision();
      const compacted = await this.store.readCompacted();
      const envelopes = await this.store.readEnvelopes(this.prefix);
      if (this.isClosed) return;
      const replay = this.fromRevision > 0 && this.fromRevision <= revision;
      if (replay && this.fromRevision <= compacted) this.resync();
      const events: WatchEvent[] = [];
      for (const envelope of envelopes) {
        this.remember(envelope);
        // Also outside a replay: a key written between the caller's listing and this first look carries a
        // revision at or past fromRevision and must be delivered, or it is remembered here and never reported.
        if (this.fromRevision > 0 && envelope.modRevision >= this.fromRevision && this.fromRevision > compacted) {
          const event = this.toEvent(envelope);
          if (event) events.push(event);
        }
      }
      this.lastRevision = revision;
      this.deliver(events);
      this.connected();
    } catch (error) {
      this.failed(error);
    }
    if (this.isClosed) return;
    try {
      this.watcher = watchDirectory(this.store.keysDirectory, () => this.lookSoon());
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // Polling alone is enough; fs.watch only shortens the wait.
    }
    this.timer = setInterval(() => void this.look(), this.store.pollInterval);
  }

  private lookSoon(): void {
    if (this.early || this.isClosed) return;
    this.early = setTimeout(() => {
      this.early = undefined;
      void this.look();
    }, 5);
  }

  /** One look at the directory; overlapping calls fold into one more look. */
  private async look(): Promise<void> {
    if (this.isClosed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.lookOnce();
      } while (this.again && !this.isClosed);
    } catch (error) {
      this.failed(error);
    } finally {
      this.running = false;
    }
  }

  private async lookOnce(): Promise<void> {
    const revision = await this.store.readRevision();
    if (revision < this.lastRevision) {
      // The store was wiped and re-created: history no longer matches what the caller holds.
      this.seen.clear();
      this.lastRevision = revision;
      this.resync();
      return;
    }
    if (revision === this.lastRevision && this.lastRevision >= 0) {
      this.connected();
      return;
    }
    const envelopes = await this.store.readEnvelopes(this.prefix);
    if (this.isClosed) return;
    const events: WatchEvent[] = [];
    const present = new Set<string>();
    for (const envelope of envelopes) {
      present.add(envelope.key);
      const known = this.seen.get(envelope.key);
      if (known !== undefined && known.modRevision >= envelope.modRevision) continue;
      const wasLive = known !== undefined || isLive(envelope);
      this.remember(envelope);
      const event = this.toEvent(envelope);
      // A tombstone of a key this watch never saw alive says nothing new.
      if (event && wasLive) events.push(event);
    }
    for (const [key, seen] of [...this.seen]) {
      if (present.has(key)) continue;
      this.seen.delete(key);
      // A live key's file vanished without a tombstone we saw (swept too soon, or removed by hand).
      if (seen.live) events.push({ type: 'delete', key, modRevision: revision });
    }
    this.lastRevision = revision;
    this.deliver(events);
    this.connected();
  }

  private remember(envelope: Envelope): void {
    const live = isLive(envelope);
    this.seen.set(envelope.key, { modRevision: envelope.modRevision, live, expiresAt: live ? envelope.expiresAt : undefined });
  }

  private toEvent(envelope: Envelope): WatchEvent | undefined {
    if (!isLive(envelope)) return { type: 'delete', key: envelope.key, modRevision: envelope.modRevision };
    return { type: 'put', kv: this.store.toKeyValue(envelope) };
  }

  private deliver(events: WatchEvent[]): void {
    events.sort((a, b) => eventRevision(a) - eventRevision(b));
    for (const event of events) this.push(event);
  }

  private connected(): void {
    if (this.failing) {
      this.failing = false;
      this.connectionChange(true);
    }
    this.checkExpiries();
  }

  /**
   * Keys whose TTL ran out while nobody wrote: the revision does not move by itself, so a watcher that holds
   * the key's expiry turns it into a tombstone (a watching agent is often the first to notice).
   */
  private checkExpiries(): void {
    if (this.isClosed) return;
    for (const [key, seen] of this.seen) {
      if (this.store.isExpired(seen)) this.store.noticeExpired(key, seen.modRevision);
    }
  }

  private failed(error: unknown): void {
    if (this.isClosed || this.failing) return;
    this.failing = true;
    this.connectionChange(false, error instanceof Error ? error : new Error(String(error)));
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.early) clearTimeout(this.early);
    this.watcher?.close();
    this.timer = this.early = this.watcher = undefined;
  }
}

interface Seen {
  readonly modRevision: number;
  readonly live: boolean;
  /** Set for live keys with a TTL. */
  readonly expiresAt?: number;
}
