// The shared suite on MemoryStore, plus what only a fake clock can test quickly.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../src/store/memory';
import { EventLog, eventually, storeSuite } from './suite';

storeSuite('memory', async () => ({ store: new MemoryStore(), cleanup: async () => {} }), { replaysHistory: true });

const test = suite('store: memory (fake clock)');

test('TTL follows the injected clock', async () => {
  let now = 1_000_000;
  const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
  try {
    await store.put('/k', 'v', { ttlSeconds: 10 });
    assert.is((await store.get('/k'))?.ttlSeconds, 10);
    now += 9_500;
    assert.is((await store.get('/k'))?.ttlSeconds, 1);
    now += 500;
    assert.is(await store.get('/k'), undefined);
    assert.is(store.revision, 2, 'the expiry was a change');
  } finally {
    await store.close();
  }
});

test('expire() sends delete events without any other call', async () => {
  let now = 0;
  const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
  const log = new EventLog();
  try {
    await store.put('/p/a', 'v', { ttlSeconds: 1 });
    store.watch('/p/', store.revision + 1, log.handlers);
    now = 1000;
    store.expire();
    await eventually('the delete', () => log.events.length === 1, 1000);
    assert.equal(log.describe(), ['delete /p/a']);
  } finally {
    await store.close();
  }
});

test('watching a compacted revision asks for a resync', async () => {
  const store = new MemoryStore();
  const log = new EventLog();
  try {
    await store.put('/p/a', '1');
    await store.put('/p/a', '2');
    store.compact(2);
    store.watch('/p/', 1, log.handlers);
    await eventually('a resync', () => log.resyncs === 1, 1000);
    assert.is(log.events.length, 0);
    store.watch('/p/', 3, new EventLog().handlers);
  } finally {
    await store.close();
  }
});

test('simulated outages reach watchers', async () => {
  const store = new MemoryStore();
  const log = new EventLog();
  try {
    store.watch('/p/', 0, log.handlers);
    store.simulateConnectionChange(false, new Error('down'));
    store.simulateConnectionChange(true);
    await eventually('both changes', () => log.connection.length === 2, 1000);
    assert.equal(log.connection, [false, true]);
  } finally {
    await store.close();
  }
});

test.run();
