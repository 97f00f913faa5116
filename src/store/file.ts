// The embedded store: a directory that the agents of one host share, one file per key.
//
//   DIR/keys/<encodeURIComponent(key)>.json   {key, value, modRevision, expiresAt?} or a tombstone {key, deleted, ...}
//   DIR/revision                              the store-wide revision of the latest change
//   DIR/compacted                             tombstones at or below this revision were removed (watchers resync)
//   DIR/lock                                  the cross-process lock (dir-lock.ts) held by every mutation
//   DIR/tmp/                                  files being written; they reach keys/ by an atomic rename
//
// Reads take no lock: every file is replaced whole by rename, so a reader sees the old or the new envelope.
// A write lands in keys/ before the revision file moves, so a listing that reads the revision first and the
// keys after never misses a change its revision claims (it may see a newer one, which a watch repeats).
// Deletes leave tombstones for a while so that watchers in other processes learn the revision of a delete.

import { randomBytes } from 'node:crypto';
import { watch as watchDirectory, type FSWatcher } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { WatchDelivery } from './delivery';
import { DirLock, errnoOf } from './dir-lock';
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

export interface FileStoreOptions {
  /** How often watchers re-read the directory (fs.watch only makes them look sooner). Default 200 ms. */
  pollIntervalMs?: number;
  /** Give up waiting for the cross-process lock after this long. Default 10 s. */
  lockTimeoutMs?: number;
  /** A lock held this long is abandoned and may be broken. Default 10 s. */
  staleLockMs?: number;
  /** How long delete tombstones are kept for watchers in other processes. Default 60 s. */
  tombstoneKeepMs?: number;
  /** How often (at most) a writer sweeps old tombstones and leftovers. Default 30 s. */
  gcIntervalMs?: number;
  /** Milliseconds since the epoch, for TTLs. Default Date.now. */
  now?: () => number;
}

interface LiveEnvelope {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly expiresAt?: number;
}

interface Tombstone {
  readonly key: string;
  readonly deleted: true;
  readonly modRevision: number;
  readonly deletedAt: number;
}

type Envelope = LiveEnvelope | Tombstone;

const MAX_FILE_NAME = 255;
const SUFFIX = '.json';
const LEFTOVER_AGE_MS = 60_000;

export class FileStore implements Store {
  readonly url: string;
  readonly dir: string;
  private readonly keysDir: string;
  private readonly tmpDir: string;
  private readonly revisionFile: string;
  private readonly compactedFile: string;
  private readonly lock: DirLock;
  private readonly pollIntervalMs: number;
  private readonly tombstoneKeepMs: number;
  private readonly gcIntervalMs: number;
  private readonly now: () => number;
  private readonly watches = new Set<FileWatch>();
  private readonly background = new Set<Promise<unknown>>();
  /** Mutations of this process queue here before contending for the cross-process lock. */
  private queue: Promise<unknown> = Promise.resolve();
  private initialized?: Promise<void>;
  private lastGc = 0;
  private closed = false;

  /** `file:/var/lib/vxtun/store`, `file:///var/lib/vxtun/store` or `file:relative/dir`. */
  static fromUrl(url: string, options?: FileStoreOptions): FileStore {
    const match = /^file:(?:\/\/)?(.+)$/.exec(url);
    if (!match) throw new StoreError(`invalid file store URL "${url}" (expected file:/path/to/dir)`, 'INVALID');
    return new FileStore(decodeURI(match[1]), options);
  }

  constructor(dir: string, options: FileStoreOptions = {}) {
    this.dir = resolve(dir);
    this.url = `file:${this.dir}`;
    this.keysDir = join(this.dir, 'keys');
    this.tmpDir = join(this.dir, 'tmp');
    this.revisionFile = join(this.dir, 'revision');
    this.compactedFile = join(this.dir, 'compacted');
    this.lock = new DirLock(join(this.dir, 'lock'), { timeoutMs: options.lockTimeoutMs, staleMs: options.staleLockMs });
    this.pollIntervalMs = options.pollIntervalMs ?? 200;
    this.tombstoneKeepMs = options.tombstoneKeepMs ?? 60_000;
    this.gcIntervalMs = options.gcIntervalMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.checkOpen();
    checkKey(key);
    await this.init();
    const envelope = await this.readEnvelope(key);
    return envelope && this.visible(envelope, true);
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    this.checkOpen();
    checkPut(key, value, options);
    this.fileNameOf(key); // rejects keys too long for a file name before taking the lock
    await this.init();
    const conditional = options.ifAbsent === true || options.ifModRevision !== undefined;
    return this.mutate(async () => {
      // A plain put may replace a damaged file; a conditional one cannot know what it compares against.
      const current = conditional ? await this.readEnvelope(key) : await this.readEnvelope(key).catch(ignoreDamage);
      const live = current && current !== 'damaged' && isLive(current) && !this.isExpired(current) ? current : undefined;
      if (options.ifAbsent && live) return false;
      // An absent key has modRevision 0, as in etcd: ifModRevision 0 means "only if absent".
      if (options.ifModRevision !== undefined && (live?.modRevision ?? 0) !== options.ifModRevision) return false;
      const modRevision = (await this.readCounter(this.revisionFile)) + 1;
      const envelope: LiveEnvelope =
        options.ttlSeconds === undefined
          ? { key, value, modRevision }
          : { key, value, modRevision, expiresAt: this.now() + options.ttlSeconds * 1000 };
      await this.commit(envelope);
      return true;
    });
  }

  async delete(key: string): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    await this.init();
    return this.mutate(async () => {
      const current = await this.readEnvelope(key).catch(ignoreDamage);
      if (current === 'damaged') {
        await this.commitTombstone(key);
        return true;
      }
      if (!current || !isLive(current)) return false;
      const existed = !this.isExpired(current);
      await this.commitTombstone(key); // an expired key is removed too, as its expiry would have
      return existed;
    });
  }

  async list(prefix: string): Promise<ListResult> {
    this.checkOpen();
    await this.init();
    const revision = await this.readCounter(this.revisionFile); // first: see the header comment
    const kvs: KeyValue[] = [];
    for (const envelope of await this.readEnvelopes(prefix)) {
      const kv = this.visible(envelope);
      if (kv) kvs.push(kv);
    }
    kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { kvs, revision };
  }

  /**
   * Watches by polling the directory and diffing by modRevision. From an old revision it replays the latest
   * write of each key changed since (and deletes whose tombstones are still kept); older than the kept
   * tombstones it asks for a resync. Revision 0 means "changes from now on".
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watch {
    this.checkOpen();
    const watch = new FileWatch(this, prefix, fromRevision, handlers, (w) => this.watches.delete(w));
    this.watches.add(watch);
    watch.start();
    return watch;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const watch of [...this.watches]) watch.close();
    await this.queue;
    await Promise.allSettled([...this.background]);
  }

  // ---- used by FileWatch ----

  /** @internal */ get pollInterval(): number {
    return this.pollIntervalMs;
  }

  /** @internal */ get keysDirectory(): string {
    return this.keysDir;
  }

  /** @internal */ readRevision(): Promise<number> {
    return this.readCounter(this.revisionFile);
  }

  /** @internal */ readCompacted(): Promise<number> {
    return this.readCounter(this.compactedFile);
  }

  /** @internal */ async initForWatch(): Promise<void> {
    await this.init();
  }

  /** @internal Every envelope (tombstones too) whose key starts with `prefix`. */
  async readEnvelopes(prefix: string, options: { skipDamaged?: boolean } = {}): Promise<Envelope[]> {
    const namePrefix = encodeURIComponent(prefix);
    let names: string[];
    try {
      names = await readdir(this.keysDir);
    } catch (error) {
      throw this.ioError(`cannot read ${this.keysDir}`, error);
    }
    const envelopes: Envelope[] = [];
    for (const name of names) {
      if (!name.endsWith(SUFFIX) || !name.startsWith(namePrefix)) continue;
      const read = this.readEnvelopeFile(join(this.keysDir, name), decodeFileName(name));
      const envelope = options.skipDamaged ? await read.catch(ignoreDamage) : await read;
      if (envelope && envelope !== 'damaged' && envelope.key.startsWith(prefix)) envelopes.push(envelope);
    }
    return envelopes;
  }

  /** @internal A live key past its expiry becomes a tombstone; whoever notices first does it. */
  noticeExpired(key: string, modRevision: number): void {
    if (this.closed) return;
    const work = this.mutate(async () => {
      const current = await this.readEnvelope(key);
      if (current && isLive(current) && current.modRevision === modRevision && this.isExpired(current)) {
        await this.commitTombstone(key);
      }
    }).catch(() => {
      // Another process may hold the lock for long or the disk may fail: the next reader tries again.
    });
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
  }

  /** @internal */ isExpired(envelope: { readonly expiresAt?: number }): boolean {
    return envelope.expiresAt !== undefined && envelope.expiresAt <= this.now();
  }

  /** @internal With `withTtlLeft` (get only, as in every store) the seconds left of a key with a TTL. */
  toKeyValue(envelope: LiveEnvelope, withTtlLeft = false): KeyValue {
    const { key, value, modRevision, expiresAt } = envelope;
    const kv = { key, value, modRevision, hasTtl: expiresAt !== undefined };
    if (!withTtlLeft || expiresAt === undefined) return kv;
    return { ...kv, ttlSeconds: ttlSecondsLeft(expiresAt, this.now()) };
  }

  // ---- internals ----

  private init(): Promise<void> {
    this.initialized ??= (async () => {
      try {
        await mkdir(this.keysDir, { recursive: true });
        await mkdir(this.tmpDir, { recursive: true });
      } catch (error) {
        this.initialized = undefined; // let a later call try again (e.g. after the admin fixed permissions)
        throw this.ioError(`cannot create the store directory ${this.dir}`, error);
      }
    })();
    return this.initialized;
  }

  /** What a reader sees of an envelope: nothing for tombstones and expired keys (whose expiry it starts). */
  private visible(envelope: Envelope, withTtlLeft = false): KeyValue | undefined {
    if (!isLive(envelope)) return undefined;
    if (this.isExpired(envelope)) {
      this.noticeExpired(envelope.key, envelope.modRevision);
      return undefined;
    }
    return this.toKeyValue(envelope, withTtlLeft);
  }

  private mutate<T>(body: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      let token: string;
      try {
        token = await this.lock.acquire();
      } catch (error) {
        throw error instanceof StoreError ? error : this.ioError(`cannot lock ${this.lock.path}`, error);
      }
      try {
        const result = await body();
        await this.collectGarbage();
        return result;
      } catch (error) {
        throw error instanceof StoreError ? error : this.ioError('cannot write', error);
      } finally {
        await this.lock.release(token).catch(() => {});
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** Under the lock: the key's file first, then the revision (see the header comment). */
  private async commit(envelope: Envelope): Promise<void> {
    await this.writeAtomically(join(this.keysDir, this.fileNameOf(envelope.key)), JSON.stringify(envelope));
    await this.writeAtomically(this.revisionFile, `${envelope.modRevision}\n`);
  }

  private async commitTombstone(key: string): Promise<void> {
    const modRevision = (await this.readCounter(this.revisionFile)) + 1;
    await this.commit({ key, deleted: true, modRevision, deletedAt: this.now() });
  }

  private async writeAtomically(path: string, text: string): Promise<void> {
    const temporary = join(this.tmpDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
    await writeFile(temporary, text);
    await rename(temporary, path);
  }

  /** Under the lock, now and then: drop old tombstones (recording the compacted revision) and leftovers of crashes. */
  private async collectGarbage(): Promise<void> {
    const now = Date.now();
    if (now - this.lastGc < this.gcIntervalMs) return;
    this.lastGc = now;
    const expired: Tombstone[] = [];
    for (const envelope of await this.readEnvelopes('', { skipDamaged: true })) {
      if (!isLive(envelope) && now - envelope.deletedAt > this.tombstoneKeepMs) expired.push(envelope);
    }
    if (expired.length > 0) {
      const compacted = Math.max(await this.readCounter(this.compactedFile), ...expired.map((t) => t.modRevision));
      await this.writeAtomically(this.compactedFile, `${compacted}\n`);
      for (const tombstone of expired) await unlink(join(this.keysDir, this.fileNameOf(tombstone.key))).catch(() => {});
    }
    await removeOlderThan(this.tmpDir, () => true, now - LEFTOVER_AGE_MS);
    const lockName = 'lock.';
    await removeOlderThan(this.dir, (name) => name.startsWith(lockName), now - LEFTOVER_AGE_MS);
  }

  private async readEnvelope(key: string): Promise<Envelope | undefined> {
    return this.readEnvelopeFile(join(this.keysDir, this.fileNameOf(key)), key);
  }

  private async readEnvelopeFile(path: string, expectedKey: string | undefined): Promise<Envelope | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return undefined; // deleted since the directory was read
      throw this.ioError(`cannot read ${path}`, error);
    }
    const envelope = parseEnvelope(text);
    if (typeof envelope === 'string' || (expectedKey !== undefined && envelope.key !== expectedKey)) {
      const why = typeof envelope === 'string' ? envelope : `it holds key "${envelope.key}", not "${expectedKey}"`;
      throw new DamagedEntryError(
        `file store entry ${path} is damaged (${why}); remove the file and let its owner write it again ` +
          `(an agent re-creates its lease on restart)`,
      );
    }
    return envelope;
  }

  private async readCounter(path: string): Promise<number> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return 0;
      throw this.ioError(`cannot read ${path}`, error);
    }
    const value = Number(text.trim());
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new StoreError(`file store counter ${path} is damaged ("${text.trim().slice(0, 40)}"); remove the store directory ${this.dir} to start afresh`, 'IO');
    }
    return value;
  }

  private fileNameOf(key: string): string {
    const name = encodeURIComponent(key) + SUFFIX;
    if (name.length > MAX_FILE_NAME) {
      throw new StoreError(`key "${key.slice(0, 60)}..." is too long for the file store (${name.length} > ${MAX_FILE_NAME} bytes encoded)`, 'INVALID');
    }
    return name;
  }

  private ioError(what: string, error: unknown): StoreError {
    const detail = error instanceof Error ? error.message : String(error);
    return new StoreError(`file store ${this.dir}: ${what}: ${detail} (check the directory's permissions and free space, or choose another --store)`, 'IO');
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError(`store ${this.url} is closed`, 'INVALID');
  }
}

/** A watch that polls the key files and reports what changed since its last look. */
class FileWatch extends WatchDelivery {
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
    private readonly store: FileStore,
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
    events.sort((a, b) => revisionOf(a) - revisionOf(b));
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

/** A key file that does not hold a valid envelope (written by hand, truncated by a crash or a full disk). */
class DamagedEntryError extends StoreError {
  constructor(message: string) {
    super(message, 'IO');
  }
}

function ignoreDamage(error: unknown): 'damaged' {
  if (error instanceof DamagedEntryError) return 'damaged';
  throw error;
}

interface Seen {
  readonly modRevision: number;
  readonly live: boolean;
  /** Set for live keys with a TTL. */
  readonly expiresAt?: number;
}

function isLive(envelope: Envelope): envelope is LiveEnvelope {
  return !('deleted' in envelope);
}

function revisionOf(event: WatchEvent): number {
  return event.type === 'put' ? event.kv.modRevision : event.modRevision;
}

function decodeFileName(name: string): string | undefined {
  try {
    return decodeURIComponent(name.slice(0, -SUFFIX.length));
  } catch {
    return undefined;
  }
}

/** The envelope, or why the text is not one. */
function parseEnvelope(text: string): Envelope | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return text.length === 0 ? 'the file is empty' : `not JSON: ${(error as Error).message}`;
  }
  if (typeof data !== 'object' || data === null) return 'not a JSON object';
  const record = data as Record<string, unknown>;
  if (typeof record.key !== 'string') return 'no "key" string';
  if (!Number.isSafeInteger(record.modRevision) || (record.modRevision as number) <= 0) return 'no positive "modRevision"';
  if (record.deleted === true) {
    if (typeof record.deletedAt !== 'number') return 'a tombstone without "deletedAt"';
    return { key: record.key, deleted: true, modRevision: record.modRevision as number, deletedAt: record.deletedAt };
  }
  if (typeof record.value !== 'string') return 'no "value" string';
  if (record.expiresAt !== undefined && typeof record.expiresAt !== 'number') return '"expiresAt" is not a number';
  return record.expiresAt === undefined
    ? { key: record.key, value: record.value, modRevision: record.modRevision as number }
    : { key: record.key, value: record.value, modRevision: record.modRevision as number, expiresAt: record.expiresAt };
}

async function removeOlderThan(dir: string, wanted: (name: string) => boolean, before: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!wanted(name)) continue;
    const path = join(dir, name);
    try {
      if ((await stat(path)).mtimeMs < before) await rm(path, { recursive: true, force: true });
    } catch {
      // gone already
    }
  }
}
