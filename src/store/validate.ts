// Argument checks shared by every store, so that all of them reject the same mistakes with the same words.

import { StoreError, type PutOptions } from './store';

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new StoreError('store key must be a non-empty string', 'INVALID');
}

export function checkPut(key: string, value: string, options: PutOptions): void {
  checkKey(key);
  if (typeof value !== 'string') throw new StoreError(`store value for "${key}" must be a string`, 'INVALID');
  const { ttlSeconds, ifModRevision } = options;
  if (ttlSeconds !== undefined && !(Number.isFinite(ttlSeconds) && ttlSeconds > 0)) {
    throw new StoreError(`ttlSeconds for "${key}" must be a positive number, got ${ttlSeconds}`, 'INVALID');
  }
  if (ifModRevision !== undefined && !(Number.isSafeInteger(ifModRevision) && ifModRevision >= 0)) {
    throw new StoreError(`ifModRevision for "${key}" must be a non-negative integer, got ${ifModRevision}`, 'INVALID');
  }
}

/** Whole seconds left before `expiresAt` (ms since the epoch), rounded up, at least 0. */
export function ttlSecondsLeft(expiresAt: number, now: number): number {
  return Math.max(0, Math.ceil((expiresAt - now) / 1000));
}
