// The shared suite on FileStore, plus what only several processes sharing one directory can show.

import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir, readdir, readFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileStore } from '../../src/store/file';
import { StoreError } from '../../src/store/store';
import { EventLog, eventually, rejects, sleep, storeSuite } from './suite';

/** Starts the racers, lets them load, then says "go" to all at once; resolves with their outputs. */
async function race(args: string[][]): Promise<string[]> {
  const racer = join(__dirname, 'file-racer.ts');
  const children = args.map((a) => spawn(process.execPath, ['-r', 'tsx/cjs', racer, ...a], { stdio: ['pipe', 'pipe', 'pipe'] }));
  try {
    const outputs = children.map((child) => {
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      child.stderr.on('data', (d: Buffer) => (err += d));
      return {
        ready: new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('ready') && resolve())),
        done: new Promise<string>((resolve, reject) =>
          child.on('exit', (code) => (code === 0 ? resolve(out.slice(out.indexOf('\n') + 1)) : reject(new Error(`racer exited ${code}: ${err}`)))),
        ),
      };
    });
    await Promise.race([Promise.all(outputs.map((o) => o.ready)), Promise.all(outputs.map((o) => o.done))]);
    for (const child of children) child.stdin.end('go\n');
    return await Promise.all(outputs.map((o) => o.done));
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'vxt-store-'));
}

storeSuite('file', async () => {
  const dir = await tempDir();
  return {
    store: new FileStore(join(dir, 'store')),
    peer: async () => new FileStore(join(dir, 'store')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}, { coalescingPauseMs: 400 });

const test = suite('store: file (several processes, damaged files)');

test('two processes racing ifAbsent and compare-and-swap: one winner each time, no lost increment', async () => {
  const dir = await tempDir();
  const rounds = 150;
  try {
    const outputs = await race([
      [dir, String(rounds), 'a'],
      [dir, String(rounds), 'b'],
    ]);
    const results = outputs.map((out) => JSON.parse(out) as { name: string; won: number[]; increments: number; conflicts: number });
    const store = new FileStore(dir);
    try {
      const winners = new Map<number, string>();
      for (const result of results) {
        assert.is(result.increments, rounds);
        for (const round of result.won) {
          assert.not.ok(winners.has(round), `round ${round} won twice`);
          winners.set(round, result.name);
        }
      }
      assert.is(winners.size, rounds, 'every round has exactly one winner');
      for (const [round, name] of winners) assert.is((await store.get(`/race/create/${round}`))?.value, name);
      assert.is((await store.get('/race/counter'))?.value, String(2 * rounds), 'no lost update');
      // The two really raced (otherwise this test proves nothing).
      assert.ok(results.every((r) => r.won.length >= rounds / 10), `wins: ${results.map((r) => r.won.length)}`);
      assert.ok(results.some((r) => r.conflicts > 0), 'the compare-and-swaps really collided');
      const listing = await store.list('/race/');
      assert.is(listing.kvs.length, rounds + 1);
      assert.ok(listing.revision >= 3 * rounds, 'every write got its own revision');
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a damaged envelope is reported with the file and a next step, and the rest keeps working', async () => {
  const dir = await tempDir();
  const store = new FileStore(dir);
  try {
    await store.put('/n/good', 'fine');
    await store.put('/n/bad', 'will be damaged');
    const log = new EventLog();
    store.watch('/n/', 0, log.handlers);
    const badFile = join(dir, 'keys', `${encodeURIComponent('/n/bad')}.json`);
    for (const damage of ['', '{"key":"/n/bad","value":"trunc', '{"key":"/n/other","value":"x","modRevision":9}', '[1,2]']) {
      await writeFile(badFile, damage);
      try {
        await store.get('/n/bad');
        assert.unreachable('a damaged file must not read as a value');
      } catch (error) {
        assert.instance(error, StoreError);
        assert.is((error as StoreError).code, 'IO');
        assert.match((error as Error).message, badFile);
        assert.match((error as Error).message, /damaged/);
        assert.match((error as Error).message, /remove the file/);
      }
      await rejects(() => store.list('/n/'), /damaged/);
    }
    assert.is((await store.get('/n/good'))?.value, 'fine', 'other keys still read');
    await rejects(() => store.put('/n/bad', 'x', { ifAbsent: true }), /damaged/);
    assert.ok(await store.put('/n/bad', 'rewritten'), 'a plain put replaces the damaged file');
    assert.is((await store.get('/n/bad'))?.value, 'rewritten');
    // The watch reports the damage as an outage, then recovery.
    await writeFile(badFile, 'garbage');
    await store.put('/n/good', 'bump');
    await eventually('the watch to report the damage', () => log.connection.includes(false), 3000);
    await store.put('/n/bad', 'fixed');
    await eventually('the watch to recover', () => log.connection.at(-1) === true, 3000);
    await eventually('the fixed value', () => log.describe().includes('put /n/bad=fixed'), 3000);
    await writeFile(badFile, '{');
    assert.is(await store.delete('/n/bad'), true, 'a damaged key can be deleted');
    assert.is(await store.get('/n/bad'), undefined);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('leftovers of a crashed writer do not show up as keys and are swept once old', async () => {
  const dir = await tempDir();
  const store = new FileStore(dir, { gcIntervalMs: 0 });
  try {
    await store.put('/k', '1');
    const fresh = join(dir, 'tmp', '123-fresh');
    const old = join(dir, 'tmp', '123-old');
    await writeFile(fresh, '{"key":');
    await writeFile(old, '{"key":');
    const longAgo = new Date(Date.now() - 120_000);
    await utimes(old, longAgo, longAgo);
    assert.ok(await store.put('/k', '2'));
    assert.is((await store.get('/k'))?.value, '2');
    assert.equal((await store.list('')).kvs.map((kv) => kv.key), ['/k']);
    assert.equal(await readdir(join(dir, 'tmp')), ['123-fresh'], 'only the old leftover is swept');
    assert.equal((await readFile(join(dir, 'lock'), 'utf8')), '', 'the lock file is empty between writes');
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a lock directory left by an older vxtun is named, with what to do', async () => {
  const dir = await tempDir();
  const store = new FileStore(dir, { lockTimeoutMs: 300 });
  try {
    await mkdir(join(dir, 'lock'), { recursive: true });
    await rejects(() => store.put('/k', '1'), /lock is a directory .*remove it when no vxtun process runs/);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('old tombstones are swept: a watch from before them resyncs, one that saw the key gets its delete', async () => {
  const dir = await tempDir();
  const store = new FileStore(dir, { tombstoneKeepMs: 0, gcIntervalMs: 0 });
  const log = new EventLog();
  const resyncing = new EventLog();
  try {
    await store.put('/p/a', '1');
    await store.put('/p/b', '1');
    const watch = store.watch('/p/', (await store.list('/p/')).revision + 1, log.handlers);
    await store.put('/p/b', '2');
    await eventually('the watch to run', () => log.events.length === 1, 3000);
    await store.delete('/p/a');
    await sleep(5);
    await store.put('/p/b', '3'); // sweeps the tombstone of /p/a, possibly before the watch saw it
    await eventually('both changes', () => log.events.length >= 3, 3000);
    await sleep(300);
    assert.equal(log.describe(), ['put /p/b=2', 'delete /p/a', 'put /p/b=3']);
    watch.close();
    assert.equal(await readdir(join(dir, 'keys')), [`${encodeURIComponent('/p/b')}.json`], 'tombstone removed');
    store.watch('/p/', 1, resyncing.handlers);
    await eventually('a resync', () => resyncing.resyncs === 1, 3000);
    await store.put('/p/c', '1');
    await eventually('live events after the resync', () => resyncing.describe().includes('put /p/c=1'), 3000);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('URLs and unusable directories', async () => {
  assert.is(FileStore.fromUrl('file:/var/lib/vxtun/store').dir, '/var/lib/vxtun/store');
  assert.is(FileStore.fromUrl('file:///var/lib/vxtun/store').url, 'file:/var/lib/vxtun/store');
  const dir = await tempDir();
  try {
    await writeFile(join(dir, 'not-a-dir'), '');
    const store = new FileStore(join(dir, 'not-a-dir', 'store'));
    await rejects(() => store.put('/k', 'v'), /cannot create the store directory/);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
