// An in-memory Store for tests: the same semantics as the real stores (store-wide revisions, TTLs, atomic
// conditional puts, watches replaying history), with a clock the test controls.

import { WatchDelivery } from './delivery';
import {
  StoreError,
  type KeyValue,
  type ListResult,
  type PutOptions,
  type Store,
  type Watch,
  type WatchEvent,
  type WatchHandlers,
} from './store';
import { checkKey, checkPut, ttlSecondsLeft } from './validate';

export interface MemoryStoreOptions {
  /** Milliseconds since the epoch; inject a fake clock to test TTLs without waiting. Default Date.now. */
  now?: () => number;
  /** Shown in messages. Default "memory:". */
  url?: string;
  /** How often expired keys are swept (and their delete events sent) without any call. Default 100 ms; 0 = never. */
  sweepIntervalMs?: number;
}

interface Entry {
  value: string;
  modRevision: number;
  createRevision: number;
  expiresAt?: number;
}

interface HistoryRecord {
  readonly revision: number;
  readonly event: WatchEvent;
}

export class MemoryStore implements Store {
  readonly url: string;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  private readonly history: HistoryRecord[] = [];
  private readonly watches = new Set<WatchDelivery>();
  private readonly sweepTimer?: NodeJS.Timeout;
  private currentRevision = 0;
  /** Events at or below this revision were forgotten: watching from there needs a resync. */
  private compactedRevision = 0;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.url = options.url ?? 'memory:';
    const interval = options.sweepIntervalMs ?? 100;
    if (interval > 0) {
      this.sweepTimer = setInterval(() => this.expire(), interval);
      this.sweepTimer.unref();
    }
  }

  /** The store-wide revision: that of the latest change. */
  get revision(): number {
    return this.currentRevision;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.checkOpen();
    checkKey(key);
    this.expire();
    const entry = this.entries.get(key);
    return entry && this.toKeyValue(key, entry, true);
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    this.checkOpen();
    checkPut(key, value, options);
    this.expire();
    const existing = this.entries.get(key);
    if (options.ifAbsent && existing) return false;
    // An absent key has modRevision 0, as in etcd: ifModRevision 0 means "only if absent".
    if (options.ifModRevision !== undefined && (existing?.modRevision ?? 0) !== options.ifModRevision) return false;
    const revision = ++this.currentRevision;
    const entry: Entry = { value, modRevision: revision, createRevision: existing?.createRevision ?? revision };
    if (options.ttlSeconds !== undefined) entry.expiresAt = this.now() + options.ttlSeconds * 1000;
    this.entries.set(key, entry);
    this.record({ type: 'put', kv: this.toKeyValue(key, entry) });
    return true;
  }

  async delete(key: string): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    this.expire();
    if (!this.entries.has(key)) return false;
    this.remove(key);
    return true;
  }

  async list(prefix: string): Promise<ListResult> {
    this.checkOpen();
    this.expire();
    const kvs: KeyValue[] = [];
    for (const [key, entry] of this.entries) {
      if (key.startsWith(prefix)) kvs.push(this.toKeyValue(key, entry));
    }
    kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { kvs, revision: this.currentRevision };
  }

  /**
   * Watches from `fromRevision` inclusive: history at or after it is replayed first.
   * A revision of 0 (or anything past the current one) means "changes from now on".
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watch {
    this.checkOpen();
    const watch = new WatchDelivery(prefix, handlers, (w) => this.watches.delete(w));
    this.watches.add(watch);
    if (fromRevision > 0 && fromRevision <= this.compactedRevision) {
      watch.resync();
      return watch;
    }
    if (fromRevision > 0) {
      for (const record of this.history) {
        if (record.revision >= fromRevision && watch.matches(keyOf(record.event))) watch.push(record.event);
      }
    }
    return watch;
  }

  /** Deletes expired keys now (each with a delete event). Called by every operation and by a timer. */
  expire(): void {
    if (this.closed) return;
    const now = this.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.remove(key);
    }
  }

  /** Forgets history up to `revision` (inclusive), like etcd compaction: older watches must resync. */
  compact(revision: number): void {
    this.compactedRevision = Math.max(this.compactedRevision, Math.min(revision, this.currentRevision));
    while (this.history.length > 0 && this.history[0].revision <= this.compactedRevision) this.history.shift();
  }

  /** Tells watchers the store went away or came back, to test how callers ride out outages. */
  simulateConnectionChange(connected: boolean, error?: Error): void {
    for (const watch of this.watches) watch.connectionChange(connected, error);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const watch of [...this.watches]) watch.close();
  }

  private remove(key: string): void {
    this.entries.delete(key);
    const revision = ++this.currentRevision;
    this.record({ type: 'delete', key, modRevision: revision });
  }

  private record(event: WatchEvent): void {
    this.history.push({ revision: this.currentRevision, event });
    const key = keyOf(event);
    for (const watch of this.watches) {
      if (watch.matches(key)) watch.push(event);
    }
  }

  /** With `withTtlLeft` (get only, as in every store) the seconds left of a key with a TTL. */
  private toKeyValue(key: string, entry: Entry, withTtlLeft = false): KeyValue {
    const kv = { key, value: entry.value, modRevision: entry.modRevision, createRevision: entry.createRevision, hasTtl: entry.expiresAt !== undefined };
    if (!withTtlLeft || entry.expiresAt === undefined) return kv;
    return { ...kv, ttlSeconds: ttlSecondsLeft(entry.expiresAt, this.now()) };
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError(`store ${this.url} is closed`, 'INVALID');
  }
}

function keyOf(event: WatchEvent): string {
  return event.type === 'put' ? event.kv.key : event.key;
}
