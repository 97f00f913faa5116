// A child process for file-crash.test.ts. argv: MODE DIR
//   hold DIR   takes the store's lock (FileLock on DIR/lock), prints "held", keeps it until stdin says anything, then
//              releases it, prints "released" and exits.
//   write DIR  prints "ready", then writes to a FileStore in DIR without end (puts of growing values, TTL puts,
//              compare-and-swap increments, deletes) until it is killed.

import { join } from 'node:path';
import { FileLock } from '../../src/store/file-lock';
import { FileStore } from '../../src/store/file';

async function hold(dir: string): Promise<void> {
  const lock = new FileLock(join(dir, 'lock'));
  await lock.acquire();
  process.stdout.write('held\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  await lock.close();
  process.stdout.write('released\n');
  process.exit(0);
}

async function write(dir: string): Promise<void> {
  const store = new FileStore(dir, { tombstoneKeepMs: 0, gcIntervalMs: 50 });
  process.stdout.write('ready\n');
  for (let i = 0; ; i++) {
    const key = `/crash/k${i % 7}`;
    switch (i % 4) {
      case 0:
        await store.put(key, `value ${i} ${'x'.repeat(i % 3000)}`);
        break;
      case 1:
        await store.put(key, `leased ${i}`, { ttlSeconds: 600 });
        break;
      case 2: {
        const counter = await store.get('/crash/counter');
        await store.put('/crash/counter', String(Number(counter?.value ?? '0') + 1), { ifModRevision: counter?.modRevision ?? 0 });
        break;
      }
      default:
        await store.delete(key);
    }
  }
}

// Only as a program: a test runner that loads every file under test/ must not start writing.
if (require.main === module) {
  const [mode, dir] = process.argv.slice(2);
  (mode === 'hold' ? hold(dir) : write(dir)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
