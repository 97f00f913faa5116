// The cluster store: etcd v3 through the `etcd3` client, in flannel's key layout (keys are used as given).
// TTLs are etcd leases granted per put; conditional puts are transactions; watches are our own gRPC watch
// streams, so that we decide how they resume (from the last revision delivered), when they resync
// (compaction) and what the caller hears about connectivity.

import { circuitBreaker, ConsecutiveBreaker, handleWhen, isBrokenCircuitError, noop } from 'cockatiel';
import { Etcd3, isRecoverableError, type ICompare, type IDuplexStream, type IKeyValue, type IWatchRequest, type IWatchResponse } from 'etcd3';
import { WatchDelivery } from './delivery';
import {
  StoreError,
  type KeyValue,
  type ListResult,
  type PutOptions,
  type Store,
  type WatchEvent,
  type WatchHandlers,
} from './store';
import { checkKey, checkPut } from './validate';

export interface EtcdStoreOptions {
  /** Every call fails after this long instead of hanging on an unreachable etcd. Default 5 s. */
  callTimeoutMs?: number;
  /** Longest pause between watch reconnection attempts. Default 5 s. */
  maxReconnectDelayMs?: number;
}

const DEFAULT_PORT = 2379;
/** How long a member that failed a call is skipped (when there are others). */
const MEMBER_SET_ASIDE_MS = 3000;
/** Between attempts of one call when every member was set aside; otherwise RETRY_PAUSE_MS. */
const ALL_SET_ASIDE_PAUSE_MS = 250;
const RETRY_PAUSE_MS = 20;
const RESTART_AFTER_COMPACTION = 'restarting the watch after compaction';

export class EtcdStore implements Store {
  readonly url: string;
  readonly hosts: readonly string[];
  private readonly client: Etcd3;
  private readonly callTimeoutMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;

  /** `etcd://HOST:PORT[,HOST:PORT...]`; the port defaults to 2379. */
  static fromUrl(url: string, options?: EtcdStoreOptions): EtcdStore {
    return new EtcdStore(parseEtcdUrl(url), options);
  }

  constructor(hosts: readonly string[], options: EtcdStoreOptions = {}) {
    if (hosts.length === 0) throw new StoreError('an etcd store needs at least one HOST:PORT', 'INVALID');
    this.hosts = hosts;
    this.url = `etcd://${hosts.join(',')}`;
    this.callTimeoutMs = options.callTimeoutMs ?? 5000;
    this.maxReconnectDelayMs = options.maxReconnectDelayMs ?? 5000;
    this.client = new Etcd3({
      hosts: hosts.map((h) => `http://${h}`),
      dialTimeout: this.callTimeoutMs,
      // With several members, call() retries on another member itself, each attempt with a deadline of its own; the
      // client's own retries share one deadline, so after a silent member used it up they failed at once on healthy
      // members too and set them aside. The client picks a member at random per call and skips one whose circuit is
      // open: its default opens after 3 failures in a row, so a silent member (no reset: every call waits for its
      // deadline) would be picked again and again; one failure sets a member aside for a few seconds instead.
      ...(hosts.length > 1
        ? {
            faultHandling: {
              global: noop,
              host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: MEMBER_SET_ASIDE_MS, breaker: new ConsecutiveBreaker(1) }),
            },
          }
        : {}),
      grpcOptions: {
        // Notice a silently dead server (no RST) on the watch streams: a ping after 10 s of quiet, 5 s for its answer.
        // etcd refuses pings under 5 s apart (--grpc-keepalive-min-time) and, like clientv3's default, pings on a
        // connection without an open call (it answers them with GOAWAY "too_many_pings"); unary calls have deadlines.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        'grpc.keepalive_permit_without_calls': 0,
      },
    });
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const response = await this.call('get', (deadline) => this.client.kv.range({ key: Buffer.from(key) }, { deadline }));
    const kv = response.kvs[0];
    if (!kv) return undefined;
    const base = toKeyValue(kv);
    if (!base.hasTtl) return base;
    const lease = kv.lease;
    const ttl = await this.call('read a lease', (deadline) => this.client.leaseClient.leaseTimeToLive({ ID: lease }, { deadline }));
    // etcd truncates the seconds left (-1: the lease expired since the read); round up instead, like the other
    // stores, never above the granted TTL.
    const left = Number(ttl.TTL);
    return { ...base, ttlSeconds: left < 0 ? 0 : Math.min(left + 1, Number(ttl.grantedTTL)) };
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    checkPut(key, value, options);
    let lease: string | undefined;
    if (options.ttlSeconds !== undefined) {
      const ttl = Math.ceil(options.ttlSeconds);
      const granted = await this.call('grant a lease', (deadline) => this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }, { deadline }));
      lease = granted.ID;
    }
    const request = { key: Buffer.from(key), value: Buffer.from(value), lease };
    const compare: ICompare[] = [];
    // createRevision 0 is etcd's "absent"; modRevision 0 compares equal only for an absent key too.
    if (options.ifAbsent) compare.push({ key: request.key, target: 'Create', result: 'Equal', create_revision: 0 });
    if (options.ifModRevision !== undefined) {
      compare.push({ key: request.key, target: 'Mod', result: 'Equal', mod_revision: options.ifModRevision });
    }
    if (compare.length === 0) {
      await this.call('put', (deadline) => this.client.kv.put(request, { deadline }));
      return true;
    }
    const response = await this.call('put', (deadline) =>
      this.client.kv.txn({ compare, success: [{ request_put: request }], failure: [] }, { deadline }),
    );
    if (!response.succeeded && lease !== undefined) {
      const unused = lease;
      void this.call('revoke a lease', (deadline) => this.client.leaseClient.leaseRevoke({ ID: unused }, { deadline })).catch(() => {});
    }
    return response.succeeded;
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    const response = await this.call('delete', (deadline) => this.client.kv.deleteRange({ key: Buffer.from(key) }, { deadline }));
    return response.deleted !== '0';
  }

  async list(prefix: string): Promise<ListResult> {
    const range = prefixRange(prefix);
    const response = await this.call('list', (deadline) => this.client.kv.range(range, { deadline }));
    // No call per key: whether a key has a TTL is in the listing (its lease ID); the seconds left are not.
    return { kvs: response.kvs.map(toKeyValue), revision: Number(response.header.revision) };
  }

  /** Revision 0 means "changes from now on". */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): EtcdWatch {
    this.checkOpen();
    const watch = new EtcdWatch(this, this.client, prefix, fromRevision, handlers, (w) => this.watches.delete(w));
    this.watches.add(watch);
    watch.start();
    return watch;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const watch of [...this.watches]) watch.close();
    this.client.close();
  }

  /** @internal */ get callTimeout(): number {
    return this.callTimeoutMs;
  }

  /** @internal */ get reconnectDelayLimit(): number {
    return this.maxReconnectDelayMs;
  }

  /** @internal The current store revision (for restarting a watch after compaction). */
  async currentRevision(): Promise<number> {
    const response = await this.call('read the revision', (deadline) =>
      this.client.kv.range({ key: Buffer.from([0]), limit: 1, keys_only: true, count_only: true }, { deadline }),
    );
    return Number(response.header.revision);
  }

  /** @internal An error as the user should read it. */
  describeError(what: string, error: unknown): StoreError {
    if (error instanceof StoreError) return error;
    // gRPC ends some messages with a label it had nothing for ("... 127.0.0.1:2379. Resolution note: "): cut it off.
    const detail = isBrokenCircuitError(error)
      ? 'it did not answer moments ago and is set aside for a few seconds' // cockatiel's own words name its breaker
      : (error instanceof Error ? error.message : String(error)).trimEnd().replace(/(?:[.;,]\s*[A-Z][A-Za-z ]*:)+$/, '');
    if (this.closed) return new StoreError(`store ${this.url} is closed`, 'INVALID');
    if (isUnavailable(error)) {
      return new StoreError(
        `cannot ${what}: etcd at ${this.hosts.join(',')} is unreachable (${detail}); ` +
          `check that etcd runs and listens there: etcdctl --endpoints=${this.hosts.join(',')} endpoint health`,
        'UNAVAILABLE',
      );
    }
    return new StoreError(`cannot ${what} in etcd at ${this.hosts.join(',')}: ${detail}`, 'IO');
  }

  /**
   * Runs one etcd call within callTimeoutMs, and a timer of our own in case the client retries past it. With several
   * members each attempt gets a share of the time (at least 1 s), and an attempt that found its member unreachable or
   * silent is tried again on another (the client skips members that failed in the last few seconds): a member that
   * drops packets without a reset (a partition, a hung host) then costs one share, not the whole call. When every
   * member was set aside, the next attempt waits a moment instead of spinning.
   */
  private async call<T>(what: string, run: (deadline: Date) => Promise<T>): Promise<T> {
    this.checkOpen();
    const end = Date.now() + this.callTimeoutMs;
    const several = this.hosts.length > 1;
    const share = several ? Math.max(1000, Math.floor(this.callTimeoutMs / this.hosts.length)) : this.callTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no answer within ${this.callTimeoutMs} ms`)), this.callTimeoutMs);
    });
    try {
      for (;;) {
        const deadline = new Date(Math.min(end, Date.now() + share));
        try {
          return await Promise.race([run(deadline), timeout]);
        } catch (error) {
          // Always a timer between attempts: errors that come back without I/O must not chain microtasks and starve
          // the event loop (the data plane runs on it).
          const pause = isBrokenCircuitError(error) ? ALL_SET_ASIDE_PAUSE_MS : RETRY_PAUSE_MS;
          if (!several || error instanceof TimeoutError || !isUnavailable(error) || this.closed || Date.now() + pause + 100 >= end) throw error;
          await Promise.race([sleep(pause), timeout]);
        }
      }
    } catch (error) {
      throw this.describeError(what, error);
    } finally {
      clearTimeout(timer);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError(`store ${this.url} is closed`, 'INVALID');
  }
}

/**
 * One gRPC watch stream per Watch: reconnects with jittered back-off and resumes after the last revision completely
 * delivered.
 *
 * Resuming: every event of one revision (one txn may change many keys, all with the same mod_revision) arrives in
 * one WatchResponse: etcd's watchable store never splits a revision across responses unless the watcher asked for
 * fragments (mvcc/watchable_store.go eventBatch; `fragment` is not requested here). So after each response every
 * revision up to its last event is complete, and the next stream starts at that + 1. A progress notification (a
 * response with no events for a synced watcher, requested by `progress_notify`) says that nothing under the prefix
 * happened up to header.revision: the resume point moves there, so a quiet watch resumes past a compaction of other
 * keys' history instead of asking for a resync (etcd clientv3 watch.go does the same with IsProgressNotify).
 */
export class EtcdWatch extends WatchDelivery {
  private stream?: IDuplexStream<IWatchRequest, IWatchResponse>;
  /** Ends the current stream and schedules the next one. */
  private endStream?: (error: unknown) => void;
  /** Where the next stream starts: every event before it was delivered. 0 until the first stream is created ("from now"). */
  private nextRevision: number;
  private retryTimer?: NodeJS.Timeout;
  /** Until etcd confirms the current stream's watch. */
  private createTimer?: NodeJS.Timeout;
  /** Failed attempts since the last stream was created, for the back-off. */
  private failures = 0;
  /** Reconnect at once (after a compaction restart), without back-off. */
  private reconnectNow = false;
  /** The store revision when the current stream was created. */
  private createdAt = 0;
  private disconnected = false;

  constructor(
    private readonly store: EtcdStore,
    private readonly client: Etcd3,
    prefix: string,
    fromRevision: number,
    handlers: WatchHandlers,
    onClose: (watch: EtcdWatch) => void,
  ) {
    super(prefix, handlers, (w) => {
      this.stop();
      onClose(w as EtcdWatch);
    });
    this.nextRevision = Math.max(0, fromRevision);
  }

  /** @internal For tests: where the next stream would start. */
  get resumeRevision(): number {
    return this.nextRevision;
  }

  start(): void {
    void this.connect();
  }

  /** @internal For tests: ends the current stream as a network failure would; the watch reconnects and resumes. */
  dropStream(): void {
    this.endStream?.(new Error('stream dropped for a test'));
  }

  private async connect(): Promise<void> {
    if (this.isClosed) return;
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.client.watchClient.watch();
    } catch (error) {
      this.lost(error);
      return;
    }
    if (this.isClosed) {
      cancelQuietly(stream);
      return;
    }
    this.stream = stream;
    let ended = false;
    const end = (error: unknown) => {
      if (ended) return;
      ended = true;
      if (this.createTimer) clearTimeout(this.createTimer);
      this.createTimer = undefined;
      if (this.stream === stream) {
        this.stream = undefined;
        this.endStream = undefined;
      }
      // A restart of our own says nothing bad about the member; a failure (or a watch never confirmed) does, and the
      // client then sets that member aside for its next choices.
      if (error instanceof Error && error.message === RESTART_AFTER_COMPACTION) cancelQuietly(stream);
      else stream.cancel();
      this.lost(error);
    };
    this.endStream = end;
    stream.on('data', (response) => this.receive(response, end));
    stream.on('error', (error) => end(error));
    stream.on('end', () => end(new Error('the watch stream ended')));
    const range = prefixRange(this.prefix);
    stream.write({
      create_request: { key: range.key, range_end: range.range_end, start_revision: this.nextRevision, progress_notify: true },
    });
    // A member that drops packets never answers the create request, and keepalive would take 15 s to tell: give up
    // on it sooner and let the next stream go to a member chosen afresh.
    this.createTimer = setTimeout(() => {
      this.createTimer = undefined;
      end(new TimeoutError(`etcd did not confirm the watch within ${this.store.callTimeout} ms`));
    }, this.store.callTimeout);
  }

  private receive(response: IWatchResponse, end: (error: unknown) => void): void {
    if (this.isClosed) return;
    const headerRevision = Number(response.header.revision);
    if (response.compact_revision && response.compact_revision !== '0') {
      // History we were asked for is gone: the caller re-lists (at a revision no older than the moment this
      // stream was created) and we go on from that moment, so nothing after its listing is missed.
      this.nextRevision = Math.max(this.createdAt + 1, Number(response.compact_revision));
      this.resync();
      this.reconnectNow = true;
      end(new Error(RESTART_AFTER_COMPACTION));
      return;
    }
    if (response.created) {
      if (this.createTimer) clearTimeout(this.createTimer);
      this.createTimer = undefined;
      this.failures = 0;
      this.createdAt = headerRevision;
      if (this.nextRevision === 0) this.nextRevision = headerRevision + 1;
      if (this.disconnected) {
        this.disconnected = false;
        this.connectionChange(true);
      }
    }
    if (response.canceled) {
      end(new Error(`etcd cancelled the watch${response.cancel_reason ? `: ${response.cancel_reason}` : ''}`));
      return;
    }
    const events = response.events ?? [];
    if (events.length === 0) {
      // A progress notification: every change under the prefix up to headerRevision has been sent already.
      if (!response.created && headerRevision > 0) this.nextRevision = Math.max(this.nextRevision, headerRevision + 1);
      return;
    }
    // Skip what an earlier stream delivered; every revision of this response is complete (see the class comment).
    const resumedAt = this.nextRevision;
    for (const event of events) {
      const modRevision = Number(event.kv.mod_revision);
      if (modRevision < resumedAt) continue;
      this.nextRevision = Math.max(this.nextRevision, modRevision + 1);
      this.push(toWatchEvent(event.type, event.kv));
    }
  }

  private lost(error: unknown): void {
    if (this.isClosed) return;
    if (!this.disconnected && !(error instanceof Error && error.message === RESTART_AFTER_COMPACTION)) {
      this.disconnected = true;
      this.connectionChange(false, this.store.describeError('watch', error));
    }
    let delay = 0;
    if (this.reconnectNow) {
      this.reconnectNow = false;
    } else {
      delay = backOffDelay(this.failures++, this.store.reconnectDelayLimit);
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, delay);
  }

  private stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.createTimer) clearTimeout(this.createTimer);
    this.retryTimer = this.createTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    this.endStream = undefined;
    if (stream) cancelQuietly(stream);
  }
}

/**
 * Cancels a stream we are done with without the client counting it as the member's failure: the etcd3 client marks a
 * member failed on a stream error (a cancel is one) only while the stream is writable, so end our side first.
 */
function cancelQuietly(stream: IDuplexStream<IWatchRequest, IWatchResponse>): void {
  stream.end();
  stream.cancel();
}

function toWatchEvent(type: IWatchResponse['events'][number]['type'], kv: IKeyValue): WatchEvent {
  if (type === 'Delete') return { type: 'delete', key: kv.key.toString(), modRevision: Number(kv.mod_revision) };
  return { type: 'put', kv: toKeyValue(kv) };
}

/** A key as etcd sent it; lease "0" (or none) means no TTL. */
function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
    hasTtl: kv.lease !== undefined && kv.lease !== '' && kv.lease !== '0',
  };
}

/** etcd's [key, range_end) for "every key starting with prefix"; the empty prefix means all keys. */
function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  if (prefix === '') return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return { key, range_end: end.subarray(0, i + 1) };
    }
  }
  return { key, range_end: Buffer.from([0]) }; // all 0xff: to the end of the keyspace
}

export function parseEtcdUrl(url: string): string[] {
  const match = /^etcd:\/\/(.+)$/.exec(url);
  if (!match) throw new StoreError(`invalid etcd store URL "${url}" (expected etcd://HOST:PORT[,HOST:PORT...])`, 'INVALID');
  return match[1]
    .replace(/\/+$/, '')
    .split(',')
    .map((host) => {
      const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(host.trim());
      if (!hostPort || (hostPort[2] !== undefined && Number(hostPort[2]) > 65535)) {
        throw new StoreError(`invalid etcd endpoint "${host}" in "${url}" (expected HOST:PORT)`, 'INVALID');
      }
      return `${hostPort[1]}:${hostPort[2] ?? DEFAULT_PORT}`;
    });
}

class TimeoutError extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const FIRST_RECONNECT_DELAY_MS = 250;

/**
 * "Full jitter" (AWS architecture blog, "Exponential Backoff And Jitter"): a uniformly random pause in
 * [0, min(limit, 250 ms * 2^failures)], so that agents cut off together do not all come back in the same instant.
 */
export function backOffDelay(failures: number, limitMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(limitMs, FIRST_RECONNECT_DELAY_MS * 2 ** Math.min(failures, 30));
  return Math.floor(random() * ceiling);
}

function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof TimeoutError) return true;
  const name = error.constructor.name;
  return (
    name === 'GRPCUnavailableError' ||
    name === 'GRPCDeadlineExceededError' ||
    name === 'BrokenCircuitError' ||
    /unavailable|deadline exceeded|ECONNREFUSED|connect|No connection established/i.test(error.message)
  );
}
