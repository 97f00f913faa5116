import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { waitForStore } from '../../src/control/store-wait';
import type { Logger } from '../../src/control/log';
import { StoreError } from '../../src/store/store';

function recordingLog(): { log: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const noop = (): void => {};
  return { warnings, log: { debug: noop, info: noop, error: noop, warn: (msg, fields) => warnings.push(`${msg} ${String(fields?.error)}`) } };
}

const unavailable = (): StoreError => new StoreError('etcd at 192.0.2.2:2379 is unreachable (no answer within 5000 ms)', 'UNAVAILABLE');

test('a store that answers on the third attempt: the value, and one warning per failed attempt saying what waits', async () => {
  const { log, warnings } = recordingLog();
  let calls = 0;
  const value = await waitForStore('read the network config', async () => {
    calls++;
    if (calls < 3) throw unavailable();
    return 'config';
  }, { waitMs: 5_000, log, initialDelayMs: 5, maxDelayMs: 20 });
  assert.is(value, 'config');
  assert.is(calls, 3);
  assert.is(warnings.length, 2);
  assert.match(warnings[0]!, /store unreachable at start: cannot read the network config yet; retrying for up to \d+ s more \(--store-wait\) etcd at 192\.0\.2\.2:2379 is unreachable/);
});

test('an error waiting cannot cure (invalid data, I/O) is thrown at once', async () => {
  const { log, warnings } = recordingLog();
  let calls = 0;
  await waitForStore('read the network config', async () => {
    calls++;
    throw new StoreError('not JSON', 'INVALID');
  }, { waitMs: 5_000, log, initialDelayMs: 5 }).then(
    () => assert.unreachable('resolved'),
    (error: Error) => assert.is(error.message, 'not JSON'),
  );
  assert.is(calls, 1);
  assert.is(warnings.length, 0);
});

test('a store still unreachable when the wait is over: the last error, after retrying about as long as asked', async () => {
  const { log } = recordingLog();
  let calls = 0;
  const started = Date.now();
  await waitForStore('acquire a lease', async () => {
    calls++;
    throw unavailable();
  }, { waitMs: 200, log, initialDelayMs: 10, maxDelayMs: 40 }).then(
    () => assert.unreachable('resolved'),
    (error: Error) => assert.match(error.message, /^gave up after \d+ attempts in 0\.2 s \(--store-wait 0\.2\): etcd at .* is unreachable/),
  );
  const elapsed = Date.now() - started;
  assert.ok(calls >= 3, `${calls} attempts`);
  assert.ok(elapsed >= 200 && elapsed < 400, `${elapsed} ms: no delay runs past the bound`);
});

test('waitMs 0: one attempt, no retry', async () => {
  const { log } = recordingLog();
  let calls = 0;
  await waitForStore('read the network config', async () => {
    calls++;
    throw unavailable();
  }, { waitMs: 0, log }).catch(() => undefined);
  assert.is(calls, 1);
});

test.run();
