// The embedded store's garbage: delete tombstones kept past their time, and files that crashed writers left behind.
//
// Deletes leave tombstones (envelope.ts) so that watchers in other processes learn the revision of a delete; after
// `tombstoneKeepMs` they go, and DIR/compacted records the highest revision removed: a watch from at or below it has
// lost history and must resync, as after an etcd compaction.

import { readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isLive, keyFileName, type Envelope, type Tombstone } from './envelope';

/** A temporary file this old was left by a writer that died (writes take milliseconds). */
export const LEFTOVER_AGE_MS = 60_000;

/** What the collector needs of its store (FileStore), called with the store's lock held. */
export interface GarbageSource {
  readonly keysDirectory: string;
  readonly tmpDirectory: string;
  readonly compactedPath: string;
  /** Every envelope, skipping damaged files (they are reported where they are read, not here). */
  readEnvelopes(prefix: string, options: { skipDamaged: true }): Promise<Envelope[]>;
  readCompacted(): Promise<number>;
  writeDurably(path: string, text: string): Promise<void>;
}

/**
 * Under the store's lock: removes tombstones older than `tombstoneKeepMs` (recording the compacted revision first, so
 * a crash in between leaves tombstones at or below it, which the next run removes) and leftovers in tmp/.
 */
export async function collectGarbage(store: GarbageSource, now: number, tombstoneKeepMs: number): Promise<void> {
  const expired: Tombstone[] = [];
  for (const envelope of await store.readEnvelopes('', { skipDamaged: true })) {
    if (!isLive(envelope) && now - envelope.deletedAt > tombstoneKeepMs) expired.push(envelope);
  }
  if (expired.length > 0) {
    const compacted = Math.max(await store.readCompacted(), ...expired.map((t) => t.modRevision));
    await store.writeDurably(store.compactedPath, `${compacted}\n`);
    for (const tombstone of expired) await unlink(join(store.keysDirectory, keyFileName(tombstone.key))).catch(() => {});
  }
  await removeOlderThan(store.tmpDirectory, now - LEFTOVER_AGE_MS);
}

async function removeOlderThan(dir: string, before: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    try {
      if ((await stat(path)).mtimeMs < before) await rm(path, { recursive: true, force: true });
    } catch {
      // gone already
    }
  }
}
