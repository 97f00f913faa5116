// One agent per network namespace: an abstract Unix socket that the kernel frees when its holder dies.
// (Abstract names are per network namespace; each test uses its own name, so parallel runs do not meet.)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NodeLock, NodeLockedError } from '../../src/control/node-lock';

const test = suite('control: node lock');

const name = (tag: string): string => `vxtun-test-${tag}-${process.pid}`;

test('a second holder is refused with the first one\'s pid; after release the lock is free', async () => {
  const lock = await NodeLock.acquire(name('a'));
  try {
    await NodeLock.acquire(name('a')).then(
      () => assert.unreachable('a second lock was granted'),
      (err: Error) => {
        assert.instance(err, NodeLockedError);
        assert.is((err as NodeLockedError).holderPid, process.pid);
        assert.is(err.message, `another vxtun agent (pid ${process.pid}) runs on this node (network namespace); stop it first`);
      },
    );
  } finally {
    await lock.release();
  }
  const again = await NodeLock.acquire(name('a'));
  await again.release();
});

test('a holder killed with SIGKILL leaves nothing behind: the lock is taken at once', async () => {
  const lockName = name('k');
  const script = `require('node:net').createServer().listen('\\0${lockName}', () => process.stdout.write('held\\n'));`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await once(child.stdout!, 'data');
    await NodeLock.acquire(lockName).then(
      () => assert.unreachable('the lock was granted while held'),
      (err: Error) => assert.instance(err, NodeLockedError),
    );
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  const lock = await NodeLock.acquire(lockName);
  await lock.release();
});

test.run();
