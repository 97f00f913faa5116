// The TUN speed levers on a real TUN in throwaway namespaces: UDP GSO writes (TUN_F_USO4, probed at open) deliver a
// run of datagrams in one write, intact, to a socket; io_uring reads and writes carry packets in order; each lever
// off gives the plain path. The kernel decides: Linux 6.2+ must take USO.
import { execFile, execFileSync } from 'child_process';
import { release } from 'os';
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/io/native';
import type { SpeedTunFacts } from './speed-tun.child';

const test = suite('speed-tun: USO writes and io_uring on a real TUN');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'speed-tun.child.ts');

function kernelAtLeast(major: number, minor: number): boolean {
  const [a, b] = release().split('.').map((part) => parseInt(part, 10));
  return a > major || (a === major && b >= minor);
}

function runChild(io: string, uso: string): Promise<{ code: number | null; out: string; facts: SpeedTunFacts }> {
  const namespace = `vxt-st-${process.pid}-${io}-${uso}`;
  execFileSync('ip', ['netns', 'add', namespace]);
  const args = ['netns', 'exec', namespace, process.execPath, '-r', 'tsx/cjs', CHILD, `vst${process.pid % 10000}`, io, uso];
  return new Promise<{ code: number | null; out: string; facts: SpeedTunFacts }>((resolve) => {
    execFile('ip', args, { cwd: ROOT, timeout: 60000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      let facts = {} as SpeedTunFacts;
      try {
        facts = JSON.parse(stdout.trim().split('\n').pop() ?? '') as SpeedTunFacts;
      } catch {
        // the assertion on code shows the output
      }
      resolve({ code, out: `stdout: ${stdout}\nstderr: ${stderr}`, facts });
    });
  }).finally(() => execFileSync('ip', ['netns', 'delete', namespace]));
}

test('uso on, io uring: 20 datagrams in one TUN write arrive intact; 100 reads in order', async () => {
  const { code, out, facts } = await runChild('uring', 'on');
  assert.is(code, 0, out);
  assert.is(facts.io, native().uringAvailable ? 'uring' : 'readv', facts.ioFallback);
  assert.is(facts.uso, kernelAtLeast(6, 2), facts.usoFallback);
  assert.is(facts.inbound.accepted, 20);
  assert.is(facts.inbound.rxDelta, facts.uso ? 1 : 20, 'one write for the whole run when USO is on');
  assert.is(facts.inbound.received, 20);
  assert.ok(facts.inbound.intact, 'every datagram intact, in order');
  assert.is(facts.outbound.read, 100);
  assert.ok(facts.outbound.inOrder);
});

test('uso off, io readv: the same traffic one packet per system call', async () => {
  const { code, out, facts } = await runChild('readv', 'off');
  assert.is(code, 0, out);
  assert.is(facts.io, 'readv');
  assert.is(facts.uso, false);
  assert.is(facts.inbound.rxDelta, 20);
  assert.ok(facts.inbound.intact);
  assert.is(facts.outbound.read, 100);
  assert.ok(facts.outbound.inOrder);
});

test.run();
