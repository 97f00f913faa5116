// A cross-process lock made of a directory, for processes on one host sharing a file store.
// Node has no flock(2), but rename(2) of a directory onto an existing non-empty directory fails atomically:
// a would-be owner prepares "<lock>.new-<token>/owner" and renames it to "<lock>". Whoever's rename
// succeeds holds the lock; the owner file says who, so a lock left by a dead process can be broken.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from './store';

export interface DirLockOptions {
  /** Give up acquiring after this long. */
  timeoutMs?: number;
  /** A lock held longer than this is considered abandoned (its owner hung or its pid was reused). */
  staleMs?: number;
}

interface Owner {
  readonly pid: number;
  readonly token: string;
  readonly acquiredAt: number;
}

const OWNER_FILE = 'owner';

export class DirLock {
  private readonly timeoutMs: number;
  private readonly staleMs: number;

  constructor(
    readonly path: string,
    options: DirLockOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.staleMs = options.staleMs ?? 10_000;
  }

  /** Waits for the lock and returns the token that proves ownership. */
  async acquire(): Promise<string> {
    const token = `${process.pid}-${randomBytes(6).toString('hex')}`;
    const staging = `${this.path}.new-${token}`;
    const owner: Owner = { pid: process.pid, token, acquiredAt: Date.now() };
    await mkdir(staging);
    const deadline = Date.now() + this.timeoutMs;
    let acquired = false;
    try {
      for (let attempt = 0; ; attempt++) {
        // The time is written fresh on each attempt: age counts from acquisition, not from the first try.
        await writeFile(join(staging, OWNER_FILE), JSON.stringify({ ...owner, acquiredAt: Date.now() }));
        try {
          await rename(staging, this.path);
          acquired = true;
          return token;
        } catch (error) {
          if (!isHeldError(error)) throw error;
        }
        const holder = await this.readOwner(this.path);
        if (holder === 'gone') continue; // released between our rename and our look: try again at once
        if (holder !== 'unreadable' && this.isStale(holder)) {
          await this.breakLock(holder, token);
          continue;
        }
        if (Date.now() > deadline) {
          const who = holder === 'unreadable' ? 'an unknown process' : `pid ${holder.pid}`;
          throw new StoreError(
            `could not lock the file store: ${this.path} is held by ${who} for more than ${this.timeoutMs} ms; ` +
              `if no vxtun process is running, remove ${this.path}`,
            'IO',
          );
        }
        // Short random back-off: holders keep the lock for a millisecond or two.
        await sleep(1 + Math.random() * Math.min(2 + attempt, 20));
      }
    } finally {
      if (!acquired) await rm(staging, { recursive: true, force: true });
    }
  }

  /** True while `token` still owns the lock (it could have been broken as stale). */
  async holds(token: string): Promise<boolean> {
    const holder = await this.readOwner(this.path);
    return typeof holder === 'object' && holder.token === token;
  }

  async release(token: string): Promise<void> {
    if (!(await this.holds(token))) return; // broken as stale meanwhile: not ours to remove
    const grave = `${this.path}.released-${token}`;
    try {
      await rename(this.path, grave);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw error;
    }
    await rm(grave, { recursive: true, force: true });
  }

  private isStale(holder: Owner): boolean {
    return !isProcessAlive(holder.pid) || Date.now() - holder.acquiredAt > this.staleMs;
  }

  /**
   * Moves an abandoned lock aside. If another process broke it first and already holds a fresh lock,
   * what we moved is that live lock: put it back.
   */
  private async breakLock(stale: Owner, myToken: string): Promise<void> {
    const grave = `${this.path}.broken-${myToken}`;
    try {
      await rename(this.path, grave);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return;
      throw error;
    }
    const moved = await this.readOwner(grave);
    if (typeof moved === 'object' && moved.token !== stale.token) {
      await rename(grave, this.path).catch(() => {});
      return;
    }
    await rm(grave, { recursive: true, force: true });
  }

  private async readOwner(dir: string): Promise<Owner | 'gone' | 'unreadable'> {
    let text: string;
    try {
      text = await readFile(join(dir, OWNER_FILE), 'utf8');
    } catch (error) {
      return errnoOf(error) === 'ENOENT' ? 'gone' : 'unreadable';
    }
    try {
      const owner = JSON.parse(text) as Partial<Owner>;
      if (typeof owner.pid === 'number' && typeof owner.token === 'string' && typeof owner.acquiredAt === 'number') {
        return owner as Owner;
      }
    } catch {
      // fall through
    }
    // An owner file that never parses is treated as abandoned long ago.
    return { pid: -1, token: 'unreadable', acquiredAt: 0 };
  }
}

function isHeldError(error: unknown): boolean {
  const code = errnoOf(error);
  return code === 'ENOTEMPTY' || code === 'EEXIST';
}

function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoOf(error) === 'EPERM'; // exists, owned by someone else
  }
}

export function errnoOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
