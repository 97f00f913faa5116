// The shared suite on EtcdStore against a real etcd, plus outages, compaction and an unreachable server.

import { existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startEtcd, type EtcdServer } from '../../src/lab/etcd-server';
import { EtcdStore } from '../../src/store/etcd';
import { StoreError } from '../../src/store/store';
import { EventLog, eventually, freshPrefix, rejects, storeSuite } from './suite';

let shared: Promise<EtcdServer> | undefined;
const sharedServer = () => (shared ??= startEtcd());

storeSuite(
  'etcd',
  async () => {
    const server = await sharedServer();
    return {
      store: EtcdStore.fromUrl(server.url),
      peer: async () => EtcdStore.fromUrl(server.url),
      cleanup: async () => {},
    };
  },
  {
    replaysHistory: true,
    after: async () => {
      await (await shared)?.stop();
      shared = undefined;
    },
  },
);

const test = suite('store: etcd (outages, compaction, unreachable)');

/** Retries a write while the client is still backing off from an outage. */
async function putSoon(store: EtcdStore, key: string, value: string): Promise<void> {
  await eventually(`put ${key}`, () => store.put(key, value).then(() => true, () => false), 15_000);
}

test('a watch survives an etcd restart: disconnected, reconnected, and nothing written meanwhile is lost', async () => {
  const server = await startEtcd();
  const watcher = EtcdStore.fromUrl(server.url);
  let writer: EtcdStore | undefined;
  try {
    const prefix = freshPrefix();
    await watcher.put(`${prefix}before`, '1');
    const log = new EventLog();
    watcher.watch(prefix, (await watcher.list(prefix)).revision + 1, log.handlers);
    await watcher.put(`${prefix}live`, '1');
    await eventually('the live event', () => log.events.length === 1, 3000);

    await server.restart({ downForMs: 300 });
    await eventually('the watch to notice the outage', () => log.connection.includes(false), 5000);
    // Written by another client right after the restart, quite possibly before the watch reconnects.
    writer = EtcdStore.fromUrl(server.url);
    await putSoon(writer, `${prefix}after-restart`, '2');
    await writer.delete(`${prefix}live`);
    await eventually('the watch to reconnect', () => log.connection.at(-1) === true, 10_000);
    await eventually('the events written after the restart', () => log.events.length === 3, 5000);
    assert.equal(log.connection, [false, true]);
    assert.equal(log.describe(), [`put ${prefix}live=1`, `put ${prefix}after-restart=2`, `delete ${prefix}live`]);
    assert.is(log.resyncs, 0);
    await putSoon(watcher, `${prefix}own`, '3');
    await eventually('the watcher\'s own later write', () => log.events.length === 4, 5000);
  } finally {
    await writer?.close();
    await watcher.close();
    await server.stop();
  }
});

test('watching from a compacted revision asks for a resync, then goes on from the present', async () => {
  const server = await startEtcd();
  const store = EtcdStore.fromUrl(server.url);
  try {
    const prefix = freshPrefix();
    await store.put(`${prefix}k`, '1');
    const old = (await store.get(`${prefix}k`))!.modRevision;
    await store.put(`${prefix}k`, '2');
    await store.put(`${prefix}k`, '3');
    await server.compact((await store.list(prefix)).revision);
    const log = new EventLog();
    store.watch(prefix, old, log.handlers);
    await eventually('a resync', () => log.resyncs === 1, 5000);
    assert.is(log.events.length, 0, 'no partial history');
    await store.put(`${prefix}k`, '4');
    await eventually('live events after the resync', () => log.describe().includes(`put ${prefix}k=4`), 5000);
    assert.equal(log.connection, [], 'a compaction is not an outage');
  } finally {
    await store.close();
    await server.stop();
  }
});

test('an etcd nobody listens for fails fast with UNAVAILABLE and the next step', async () => {
  const port = await closedPort();
  const store = new EtcdStore([`127.0.0.1:${port}`], { callTimeoutMs: 3000 });
  try {
    const started = Date.now();
    const error = await rejects(() => store.get('/k'), new RegExp(`etcd at 127\\.0\\.0\\.1:${port} is unreachable.*etcdctl`));
    assert.instance(error, StoreError);
    assert.is((error as StoreError).code, 'UNAVAILABLE');
    assert.not.match(error.message, /: \)/, 'no empty trailing fragment');
    assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
    await rejects(() => store.put('/k', 'v', { ifAbsent: true }), /is unreachable/);

    const log = new EventLog();
    const watch = store.watch('/', 0, log.handlers);
    await eventually('the watch to report the outage', () => log.connection.length === 1, 5000);
    assert.equal(log.connection, [false]);
    watch.close();
  } finally {
    await store.close();
  }
});

test('the unreachable message leaves out the empty fragments gRPC ends its detail with', () => {
  const store = new EtcdStore(['127.0.0.1:1']);
  try {
    const grpc = '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ';
    const { message } = store.describeError('get', new Error(grpc));
    assert.match(message, '(14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1); check');
    assert.not.match(message, 'Resolution note');
    assert.match(store.describeError('get', new Error('connect ECONNREFUSED 127.0.0.1:1')).message, '(connect ECONNREFUSED 127.0.0.1:1); check');
  } finally {
    void store.close();
  }
});

test('an etcd that accepts connections but never answers times out instead of hanging', async () => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as { port: number }).port;
  const store = new EtcdStore([`127.0.0.1:${port}`], { callTimeoutMs: 1500 });
  try {
    const started = Date.now();
    await rejects(() => store.list('/'), /is unreachable/);
    const took = Date.now() - started;
    assert.ok(took >= 1000 && took < 3000, `took ${took} ms`);
  } finally {
    await store.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('URLs', () => {
  assert.equal(EtcdStore.fromUrl('etcd://127.0.0.1:2379').hosts, ['127.0.0.1:2379']);
  const many = EtcdStore.fromUrl('etcd://10.0.0.1:2379,etcd-2,[::1]:4001/');
  assert.equal(many.hosts, ['10.0.0.1:2379', 'etcd-2:2379', '[::1]:4001']);
  assert.is(many.url, 'etcd://10.0.0.1:2379,etcd-2:2379,[::1]:4001');
  void many.close();
  assert.throws(() => EtcdStore.fromUrl('etcd://'), /invalid etcd/);
  assert.throws(() => EtcdStore.fromUrl('etcd://host:99999'), /invalid etcd endpoint/);
});

test('startEtcd leaves no process and no data behind', async () => {
  const server = await startEtcd();
  const pid = server.pid!;
  const dataDir = server.dataDir;
  assert.ok(isAlive(pid));
  await server.stop();
  assert.not.ok(isAlive(pid), 'etcd exited');
  assert.not.ok(existsSync(dataDir), 'temporary data dir removed');
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A loopback port with no listener. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test.run();
