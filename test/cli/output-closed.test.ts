// A reader that quits early (`vxtun ... | head -3`): the CLI stops quietly, as Ctrl-C would, without a stack trace.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  chunks: number;
}

/** Runs the CLI with stdout a pipe that is closed after the first chunk arrives. */
function runClosingEarly(args: string[]): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let chunks = 0;
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.stdout.on('data', () => {
      chunks++;
      child.stdout.destroy();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, chunks });
    });
  });
}

const Closed = suite('output closed early');
let dir = '';

Closed.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'vxtun-epipe-'));
});
Closed.after.each(() => rmSync(dir, { recursive: true, force: true }));

Closed('store ls into a reader that quits after the first chunk exits 0 with nothing on stderr', async () => {
  // Far more than a pipe holds (64 KiB), one write per key: the CLI is still writing when the reader goes.
  const keys = join(dir, 'store', 'keys');
  mkdirSync(keys, { recursive: true });
  const value = 'v'.repeat(200);
  for (let i = 1; i <= 2000; i++) {
    const key = `/k/${String(i).padStart(5, '0')}`;
    writeFileSync(join(keys, `${encodeURIComponent(key)}.json`), JSON.stringify({ key, value, modRevision: i }));
  }
  writeFileSync(join(dir, 'store', 'revision'), '2000\n');
  const ended = await runClosingEarly(['store', 'ls', '--values', '--store', `file:${join(dir, 'store')}`]);
  assert.is(ended.chunks, 1);
  assert.is(ended.stderr, '', ended.stderr);
  assert.is(ended.signal, null);
  assert.is(ended.code, 0);
});

Closed('--help into a reader that quits early exits 0 with nothing on stderr', async () => {
  const ended = await runClosingEarly(['--help']);
  assert.is(ended.stderr, '');
  assert.is(ended.code, 0);
});

Closed.run();
