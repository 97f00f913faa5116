// The store seam, narrow as flannel's pkg/subnet: keys and string values with revisions, atomic create,
// TTLs, and a watch that yields batches of changes or asks for a resync. Values are opaque to the store.

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Revision at which this value was written (store-wide, monotonically increasing). */
  readonly modRevision: number;
  /**
   * Revision at which the key was created (etcd's create_revision): kept by every rewrite, new only after the key was
   * deleted or expired. What a stable "older lease first" is decided by; modRevision moves with each renewal.
   */
  readonly createRevision: number;
  /** The key expires unless written again (it was put with ttlSeconds; in etcd: it is attached to a lease). */
  readonly hasTtl: boolean;
  /**
   * Whole seconds left until the key expires, rounded up: set by get() for a key with a TTL, never by list() or
   * watch events (etcd would need one LeaseTimeToLive call per key: 5,000 leases made most of a 2 s start).
   * Use `hasTtl` to tell a key with a TTL from one without.
   */
  readonly ttlSeconds?: number;
}

export interface PutOptions {
  /** Expire the key after this many seconds unless written again. */
  ttlSeconds?: number;
  /** Only write when the key does not exist (atomic create). */
  ifAbsent?: boolean;
  /** Only write when the key's modRevision is exactly this (compare-and-swap); 0 means "only if absent", as in etcd. */
  ifModRevision?: number;
}

export type WatchEvent =
  | { readonly type: 'put'; readonly kv: KeyValue }
  | { readonly type: 'delete'; readonly key: string; readonly modRevision: number };

export interface WatchHandlers {
  /** A batch of changes under the prefix, in revision order. */
  onEvents(events: WatchEvent[]): void;
  /** The watch lost history (compaction, restart): the caller must re-list and start again from the new snapshot. */
  onResync?(): void;
  /** The store became unreachable or reachable again; the data plane keeps its tables meanwhile. */
  onConnectionChange?(connected: boolean, error?: Error): void;
}

export interface Watch {
  close(): void;
}

export interface ListResult {
  readonly kvs: KeyValue[];
  /** Store revision the listing reflects; watch from revision + 1 to miss nothing. */
  readonly revision: number;
}

export interface Store {
  /** A description for messages, e.g. "file:/var/lib/vxtun/store" or "etcd://127.0.0.1:2379". */
  readonly url: string;
  get(key: string): Promise<KeyValue | undefined>;
  /** Returns false when a condition (ifAbsent, ifModRevision) failed; true when written. */
  put(key: string, value: string, options?: PutOptions): Promise<boolean>;
  /** Returns true when the key existed. */
  delete(key: string): Promise<boolean>;
  list(prefix: string): Promise<ListResult>;
  /**
   * Watches keys under the prefix from `fromRevision` (inclusive); 0 means "changes from now on".
   * After onResync the watch goes on delivering changes from about the moment of the resync.
   */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watch;
  close(): Promise<void>;
}

/** Thrown by stores for conditions a user must act on; `code` is stable for programs. */
export class StoreError extends Error {
  constructor(message: string, readonly code: 'UNAVAILABLE' | 'INVALID' | 'IO') {
    super(message);
    this.name = 'StoreError';
  }
}
