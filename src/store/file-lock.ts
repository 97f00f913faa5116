// The embedded store's cross-process lock: flock(2) on DIR/lock (native/lock.cc; Node has none). The kernel releases
// the lock when its holder dies, at once, and never takes it from a live holder however long it keeps it (the
// directory lock this replaces broke locks by age, which let a slow live holder and a newcomer write together).
//
// The lock file also says who holds it: the holder writes its pid into it after taking the lock and empties it before
// releasing. A holder that finds a pid there took over from one that died holding the lock, maybe halfway through a
// write: the store then repairs what such a write can leave (file.ts, recover).

import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { native } from '../io/native';
import { errnoOf } from './envelope';
import { StoreError } from './store';

export interface FileLockOptions {
  /** Give up waiting after this long; default 10 s. */
  timeoutMs?: number;
}

export interface LockHold {
  /** The previous holder died while holding the lock (its pid was still in the lock file). */
  readonly tookOverFromDead: boolean;
}

export class FileLock {
  private readonly timeoutMs: number;
  private handle?: FileHandle;
  private held = false;

  constructor(
    readonly path: string,
    options: FileLockOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /**
   * Waits for the lock: non-blocking flock attempts with a short random back-off (holders keep it for a few ms), so
   * the event loop never blocks. StoreError IO after timeoutMs, naming the holder's pid when it wrote one.
   */
  async acquire(): Promise<LockHold> {
    if (this.held) throw new Error(`${this.path} is already held by this FileLock`);
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const handle = await this.open();
      if (native().flockTry(handle.fd, true)) {
        // Someone may have removed the file while we waited and made a new one that others lock: ours must be it.
        if (await this.isCurrentFile(handle)) {
          this.held = true;
          const previous = await readHolder(handle);
          await handle.truncate(0);
          await handle.write(`${process.pid}\n`, 0);
          return { tookOverFromDead: previous.length > 0 };
        }
        native().flockRelease(handle.fd);
        await this.closeHandle();
        continue;
      }
      if (Date.now() > deadline) {
        const holder = await readHolder(handle).catch(() => '');
        throw new StoreError(
          `could not lock the file store: ${this.path} is held by ${/^\d+$/.test(holder) ? `pid ${holder}` : 'another process'} ` +
            `for more than ${this.timeoutMs} ms; the lock goes when that process exits (stop it if it hangs)`,
          'IO',
        );
      }
      await sleep(1 + Math.random() * Math.min(2 + attempt, 20));
    }
  }

  /** Empties the lock file (a clean release) and unlocks; the file stays open for the next acquire. */
  async release(): Promise<void> {
    if (!this.held || !this.handle) return;
    this.held = false;
    try {
      await this.handle.truncate(0);
    } finally {
      native().flockRelease(this.handle.fd);
    }
  }

  /** Releases (if held) and closes the file. */
  async close(): Promise<void> {
    await this.release().catch(() => {});
    await this.closeHandle();
  }

  private async open(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    try {
      this.handle = await open(this.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (error) {
      if (errnoOf(error) === 'EISDIR') {
        throw new StoreError(`${this.path} is a directory (a lock left by an older vxtun): remove it when no vxtun process runs`, 'IO');
      }
      throw error;
    }
    return this.handle;
  }

  private async isCurrentFile(handle: FileHandle): Promise<boolean> {
    const [mine, named] = await Promise.all([
      handle.stat(),
      stat(this.path).catch(() => undefined),
    ]);
    return named !== undefined && named.ino === mine.ino && named.dev === mine.dev;
  }

  private async closeHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }
}

/** What the lock file says (a pid, or nothing), read at offset 0 whatever the file position. */
async function readHolder(handle: FileHandle): Promise<string> {
  const buffer = Buffer.alloc(64);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  return buffer.subarray(0, bytesRead).toString('utf8').trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
