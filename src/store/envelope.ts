// The embedded store's on-disk format: one JSON envelope per key file, its file name, and how a damaged file is told
// apart from a missing one.
//
//   keys/<encodeURIComponent(key)>.json   {key, value, modRevision, createRevision?, expiresAt?}  a live key
//                                         {key, deleted: true, modRevision, deletedAt} a tombstone (see file-gc.ts)
//
// expiresAt and deletedAt are milliseconds since the epoch; modRevision is the store-wide revision of the write;
// createRevision the one of the write that created the key (kept by rewrites; absent in files written before it
// existed, read as modRevision).

import { readFile } from 'node:fs/promises';
import { StoreError } from './store';

export interface LiveEnvelope {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly createRevision?: number;
  readonly expiresAt?: number;
}

export interface Tombstone {
  readonly key: string;
  readonly deleted: true;
  readonly modRevision: number;
  readonly deletedAt: number;
}

export type Envelope = LiveEnvelope | Tombstone;

/** Linux's NAME_MAX: longer file names fail with ENAMETOOLONG. */
const MAX_FILE_NAME = 255;
export const ENVELOPE_SUFFIX = '.json';

export function isLive(envelope: Envelope): envelope is LiveEnvelope {
  return !('deleted' in envelope);
}

/** The key's file name in keys/; StoreError INVALID when it would be too long for the file system. */
export function keyFileName(key: string): string {
  const name = encodeURIComponent(key) + ENVELOPE_SUFFIX;
  if (name.length > MAX_FILE_NAME) {
    throw new StoreError(`key "${key.slice(0, 60)}..." is too long for the file store (${name.length} > ${MAX_FILE_NAME} bytes encoded)`, 'INVALID');
  }
  return name;
}

/** The key a file name in keys/ stands for, or undefined for a name that is not one (a stray file). */
export function keyOfFileName(name: string): string | undefined {
  if (!name.endsWith(ENVELOPE_SUFFIX)) return undefined;
  try {
    return decodeURIComponent(name.slice(0, -ENVELOPE_SUFFIX.length));
  } catch {
    return undefined;
  }
}

/** The envelope, or why the text is not one. */
export function parseEnvelope(text: string): Envelope | string {
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
  const createRevision = record.createRevision;
  if (createRevision !== undefined && (!Number.isSafeInteger(createRevision) || (createRevision as number) <= 0 || (createRevision as number) > (record.modRevision as number))) {
    return '"createRevision" is not a positive revision at most "modRevision"';
  }
  const live: LiveEnvelope = { key: record.key, value: record.value, modRevision: record.modRevision as number };
  return {
    ...live,
    ...(createRevision === undefined ? {} : { createRevision: createRevision as number }),
    ...(record.expiresAt === undefined ? {} : { expiresAt: record.expiresAt }),
  };
}

/** A key file that does not hold a valid envelope (written by hand, truncated by a full disk). */
export class DamagedEntryError extends StoreError {
  constructor(message: string) {
    super(message, 'IO');
  }
}

/** For callers that may go on past a damaged file: turns DamagedEntryError into 'damaged', rethrows the rest. */
export function ignoreDamage(error: unknown): 'damaged' {
  if (error instanceof DamagedEntryError) return 'damaged';
  throw error;
}

/**
 * Reads one key file: undefined when it does not exist (deleted since the directory was read), DamagedEntryError
 * (naming the file and what to do) when it holds no envelope or another key's, `ioError(...)` for other failures.
 */
export async function readEnvelopeFile(
  path: string,
  expectedKey: string | undefined,
  ioError: (what: string, error: unknown) => StoreError,
): Promise<Envelope | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw ioError(`cannot read ${path}`, error);
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

/** The `code` of a Node system error ('ENOENT'...), if it has one. */
export function errnoOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}
