// The embedded store against dying processes: a writer SIGKILLed at random moments never leaves a key that does not
// parse nor a revision that the next write would reuse; the flock(2) lock goes at once with a dead holder and never
// with a live one, however long it keeps it.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isLive, parseEnvelope, type Envelope } from '../../src/store/envelope';
import { FileStore } from '../../src/store/file';
import { rejects, sleep } from './suite';

const test = suite('store: file (SIGKILLed writers, flock)');
const CHILD = join(__dirname, 'file-child.ts');

interface Child {
  process: ChildProcess;
  /** Resolves when the child printed `word` on a line. */
  said(word: string): Promise<void>;
  exited: Promise<void>;
}

function startChild(mode: 'hold' | 'write', dir: string): Child {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', CHILD, mode, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk;
    for (const waiter of waiters) waiter();
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    process: child,
    exited,
    said: (word) =>
      new Promise<void>((resolve, reject) => {
        const check = () => out.split('\n').includes(word) && resolve();
        waiters.push(check);
        check();
        void exited.then(() => (out.split('\n').includes(word) ? resolve() : reject(new Error(`child ${mode} exited: ${err}`))));
      }),
  };
}

async function kill(child: Child): Promise<void> {
  if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
  await child.exited;
}

/** Every key file as it is on disk, parsed without the store's help: a file that does not parse fails the test. */
async function readAllEnvelopes(dir: string): Promise<Envelope[]> {
  const envelopes: Envelope[] = [];
  for (const name of await readdir(join(dir, 'keys')).catch(() => [])) {
    const text = await readFile(join(dir, 'keys', name), 'utf8');
    const envelope = parseEnvelope(text);
    if (typeof envelope === 'string') assert.unreachable(`keys/${name} does not parse (${envelope}): ${JSON.stringify(text.slice(0, 80))}`);
    else envelopes.push(envelope);
  }
  return envelopes;
}

async function revisionOnDisk(dir: string): Promise<number> {
  return Number((await readFile(join(dir, 'revision'), 'utf8')).trim());
}

test('a writer SIGKILLed at random moments, many times: every key parses and revisions stay unique and covered', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vxt-crash-'));
  const kills = 25;
  let caughtMidWrite = 0;
  let keyAheadOfRevision = 0;
  const store = new FileStore(dir);
  try {
    for (let round = 0; round < kills; round++) {
      const writer = startChild('write', dir);
      try {
        await writer.said('ready');
        await sleep(20 + Math.random() * 150);
      } finally {
        await kill(writer);
      }
      const envelopes = await readAllEnvelopes(dir);
      const revision = await revisionOnDisk(dir).catch(() => 0);
      const newest = Math.max(0, ...envelopes.map((e) => e.modRevision));
      // At most the one write in flight is ahead of the revision file (key renamed, revision not yet).
      assert.ok(newest <= revision + 1, `round ${round}: a key at ${newest}, the revision file says ${revision}`);
      const leftovers = await readdir(join(dir, 'tmp')).catch(() => []);
      if (newest === revision + 1 || leftovers.length > 0) caughtMidWrite++;
      if (newest === revision + 1) keyAheadOfRevision++;

      // The next writer repairs what a kill between the key and the revision left, so no revision is used twice. This
      // store lives through every round: after its first write it repairs only because the lock file names a dead
      // holder (a fresh store would check anyway).
      {
        await store.put('/crash/probe', String(round));
        const probe = (await store.get('/crash/probe'))!;
        assert.ok(probe.modRevision > newest, `round ${round}: the probe got ${probe.modRevision}, a key had ${newest}`);
        assert.is(await revisionOnDisk(dir), probe.modRevision);
        const revisions = (await readAllEnvelopes(dir)).map((e) => e.modRevision);
        assert.is(new Set(revisions).size, revisions.length, `round ${round}: unique revisions: ${revisions}`);
        const listed = await store.list('/crash/');
        assert.ok(listed.kvs.every((kv) => kv.modRevision <= listed.revision));
      }
    }
    assert.ok(caughtMidWrite > 0, 'no kill landed inside a write: the test proved nothing');
    const counter = (await readAllEnvelopes(dir)).find((e) => e.key === '/crash/counter');
    assert.ok(counter && isLive(counter) && Number(counter.value) > 0, 'the writers really wrote');
    process.stdout.write(`  (${caughtMidWrite} of ${kills} kills landed inside a write, ${keyAheadOfRevision} between a key and the revision)\n`);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a lock holder that is SIGKILLed releases the lock at once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vxt-lock-'));
  const store = new FileStore(dir, { lockTimeoutMs: 20_000 });
  const holder = startChild('hold', dir);
  try {
    await store.put('/k', '1');
    await holder.said('held');
    let written = false;
    const put = store.put('/k', '2').then((ok) => (written = ok));
    await sleep(500);
    assert.not.ok(written, 'blocked while the holder lives');
    const killedAt = Date.now();
    await kill(holder);
    await put;
    const waited = Date.now() - killedAt;
    assert.ok(waited < 300, `the lock went with its holder: ${waited} ms`);
    assert.is((await store.get('/k'))?.value, '2');
  } finally {
    await kill(holder);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a live holder keeping the lock longer than the old stale age (10 s) still blocks, and is named', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vxt-lock-'));
  const store = new FileStore(dir, { lockTimeoutMs: 10_500 });
  const holder = startChild('hold', dir);
  try {
    await holder.said('held');
    const started = Date.now();
    await rejects(() => store.put('/k', '1'), new RegExp(`held by pid ${holder.process.pid} for more than 10500 ms`));
    assert.ok(Date.now() - started >= 10_000);
    assert.is(holder.process.exitCode, null, 'the holder still lives');
    assert.is(await store.get('/k'), undefined, 'nothing was written');
    holder.process.stdin!.end('release\n');
    await holder.said('released');
    assert.ok(await store.put('/k', '1'), 'free once released');
  } finally {
    await kill(holder);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
