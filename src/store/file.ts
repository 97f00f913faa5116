// The embedded store: a directory that the agents of one host share, one file per key.
//
//   DIR/keys/<encodeURIComponent(key)>.json   one envelope per key (envelope.ts), tombstones too (file-gc.ts)
//   DIR/revision                              the store-wide revision of the latest change
//   DIR/compacted                             tombstones at or below this revision were removed (watchers resync)
//   DIR/lock                                  flock(2)ed by every mutation; holds the holder's pid (file-lock.ts)
//   DIR/tmp/                                  files being written; they reach keys/ by an atomic rename
//
// Reads take no lock: every file is replaced whole by rename, so a reader sees the old or the new envelope.
// A write lands in keys/ before the revision file moves, so a listing that reads the revision first and the
// keys after never misses a change its revision claims (it may see a newer one, which a watch repeats).
// Writes are durable (durable-write.ts: fsync of the file, rename, fsync of its directory), key first, revision second.
// A writer killed between the two leaves a key one revision ahead of DIR/revision: the next holder of the lock
// repairs that before writing (recover), so revisions stay unique and DIR/revision covers every key.

import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeDurably } from './durable-write';
import {
  errnoOf,
  ignoreDamage,
  isLive,
  keyFileName,
  keyOfFileName,
  readEnvelopeFile,
  type Envelope,
  type LiveEnvelope,
} from './envelope';
import { collectGarbage, type GarbageSource } from './file-gc';
import { FileLock } from './file-lock';
import { FileWatch, type FileWatchSource } from './file-watch';
import { StoreError, type KeyValue, type ListResult, type PutOptions, type Store, type Watch, type WatchHandlers } from './store';
import { checkKey, checkPut, ttlSecondsLeft } from './validate';

export interface FileStoreOptions {
  /** How often watchers re-read the directory (fs.watch only makes them look sooner). Default 200 ms. */
  pollIntervalMs?: number;
  /** Give up waiting for the cross-process lock after this long. Default 10 s. */
  lockTimeoutMs?: number;
  /** How long delete tombstones are kept for watchers in other processes. Default 60 s. */
  tombstoneKeepMs?: number;
  /** How often (at most) a writer sweeps old tombstones and leftovers. Default 30 s. */
  gcIntervalMs?: number;
  /** Milliseconds since the epoch, for TTLs. Default Date.now. */
  now?: () => number;
}

export class FileStore implements Store, FileWatchSource, GarbageSource {
  readonly url: string;
  readonly dir: string;
  readonly keysDirectory: string;
  readonly tmpDirectory: string;
  readonly compactedPath: string;
  readonly pollInterval: number;
  private readonly revisionFile: string;
  private readonly lock: FileLock;
  private readonly tombstoneKeepMs: number;
  private readonly gcIntervalMs: number;
  private readonly now: () => number;
  private readonly watches = new Set<FileWatch>();
  private readonly background = new Set<Promise<unknown>>();
  /** Mutations of this process queue here before contending for the cross-process lock. */
  private queue: Promise<unknown> = Promise.resolve();
  private initialized?: Promise<void>;
  /** Checked once per FileStore (after a reboot nobody's pid is in the lock file) and after every dead holder. */
  private recovered = false;
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
    this.keysDirectory = join(this.dir, 'keys');
    this.tmpDirectory = join(this.dir, 'tmp');
    this.revisionFile = join(this.dir, 'revision');
    this.compactedPath = join(this.dir, 'compacted');
    this.lock = new FileLock(join(this.dir, 'lock'), { timeoutMs: options.lockTimeoutMs });
    this.pollInterval = options.pollIntervalMs ?? 200;
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
    keyFileName(key); // rejects keys too long for a file name before taking the lock
    await this.init();
    const conditional = options.ifAbsent === true || options.ifModRevision !== undefined;
    return this.mutate(async () => {
      // A plain put may replace a damaged file; a conditional one cannot know what it compares against.
      const current = conditional ? await this.readEnvelope(key) : await this.readEnvelope(key).catch(ignoreDamage);
      const live = current && current !== 'damaged' && isLive(current) && !this.isExpired(current) ? current : undefined;
      if (options.ifAbsent && live) return false;
      // An absent key has modRevision 0, as in etcd: ifModRevision 0 means "only if absent".
      if (options.ifModRevision !== undefined && (live?.modRevision ?? 0) !== options.ifModRevision) return false;
      const modRevision = (await this.readRevision()) + 1;
      // A rewrite keeps the key's creation; a key that was absent, deleted or expired is created anew.
      const createRevision = live ? (live.createRevision ?? live.modRevision) : modRevision;
      const envelope: LiveEnvelope =
        options.ttlSeconds === undefined
          ? { key, value, modRevision, createRevision }
          : { key, value, modRevision, createRevision, expiresAt: this.now() + options.ttlSeconds * 1000 };
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
    const revision = await this.readRevision(); // first: see the header comment
    const kvs: KeyValue[] = [];
    for (const envelope of await this.readEnvelopes(prefix)) {
      const kv = this.visible(envelope);
      if (kv) kvs.push(kv);
    }
    kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { kvs, revision };
  }

  /**
   * Watches by polling the directory and diffing by modRevision (file-watch.ts). From an old revision it replays the
   * latest write of each key changed since (and deletes whose tombstones are still kept); older than the kept
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
    await this.lock.close();
  }

  // ---- for FileWatch and the garbage collector ----

  /** @internal */ readRevision(): Promise<number> {
    return this.readCounter(this.revisionFile);
  }

  /** @internal */ readCompacted(): Promise<number> {
    return this.readCounter(this.compactedPath);
  }

  /** @internal */ async initForWatch(): Promise<void> {
    await this.init();
  }

  /** @internal */ writeDurably(path: string, text: string): Promise<void> {
    return writeDurably(this.tmpDirectory, path, text);
  }

  /** @internal Every envelope (tombstones too) whose key starts with `prefix`. */
  async readEnvelopes(prefix: string, options: { skipDamaged?: boolean } = {}): Promise<Envelope[]> {
    const namePrefix = encodeURIComponent(prefix);
    let names: string[];
    try {
      names = await readdir(this.keysDirectory);
    } catch (error) {
      throw this.ioError(`cannot read ${this.keysDirectory}`, error);
    }
    const envelopes: Envelope[] = [];
    for (const name of names) {
      if (!name.startsWith(namePrefix)) continue;
      const key = keyOfFileName(name);
      if (key === undefined) continue;
      const read = readEnvelopeFile(join(this.keysDirectory, name), key, this.ioError);
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
    const kv = { key, value, modRevision, createRevision: envelope.createRevision ?? modRevision, hasTtl: expiresAt !== undefined };
    if (!withTtlLeft || expiresAt === undefined) return kv;
    return { ...kv, ttlSeconds: ttlSecondsLeft(expiresAt, this.now()) };
  }

  // ---- internals ----

  private init(): Promise<void> {
    this.initialized ??= (async () => {
      try {
        await mkdir(this.keysDirectory, { recursive: true });
        await mkdir(this.tmpDirectory, { recursive: true });
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
      let hold;
      try {
        hold = await this.lock.acquire();
      } catch (error) {
        throw error instanceof StoreError ? error : this.ioError(`cannot lock ${this.lock.path}`, error);
      }
      try {
        if (hold.tookOverFromDead || !this.recovered) await this.recover();
        const result = await body();
        const now = Date.now();
        if (now - this.lastGc >= this.gcIntervalMs) {
          this.lastGc = now;
          await collectGarbage(this, now, this.tombstoneKeepMs);
        }
        return result;
      } catch (error) {
        throw error instanceof StoreError ? error : this.ioError('cannot write', error);
      } finally {
        await this.lock.release().catch(() => {});
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Under the lock, when the previous holder may have died halfway through a write (and once per FileStore, which
   * covers a power loss): a key renamed into keys/ whose revision file was not written yet is one revision ahead of
   * DIR/revision; move the revision up to it, or the next write would reuse that revision.
   */
  private async recover(): Promise<void> {
    const revision = await this.readRevision();
    let newest = revision;
    for (const envelope of await this.readEnvelopes('', { skipDamaged: true })) newest = Math.max(newest, envelope.modRevision);
    if (newest > revision) await this.writeDurably(this.revisionFile, `${newest}\n`);
    this.recovered = true;
  }

  /** Under the lock: the key's file first, then the revision (see the header comment). */
  private async commit(envelope: Envelope): Promise<void> {
    await this.writeDurably(join(this.keysDirectory, keyFileName(envelope.key)), JSON.stringify(envelope));
    await this.writeDurably(this.revisionFile, `${envelope.modRevision}\n`);
  }

  private async commitTombstone(key: string): Promise<void> {
    const modRevision = (await this.readRevision()) + 1;
    await this.commit({ key, deleted: true, modRevision, deletedAt: this.now() });
  }

  private readEnvelope(key: string): Promise<Envelope | undefined> {
    return readEnvelopeFile(join(this.keysDirectory, keyFileName(key)), key, this.ioError);
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

  private readonly ioError = (what: string, error: unknown): StoreError => {
    const detail = error instanceof Error ? error.message : String(error);
    return new StoreError(`file store ${this.dir}: ${what}: ${detail} (check the directory's permissions and free space, or choose another --store)`, 'IO');
  };

  private checkOpen(): void {
    if (this.closed) throw new StoreError(`store ${this.url} is closed`, 'INVALID');
  }
}
