// EtcdStore against a real etcd: every event of a multi-key transaction reaches a watcher (also across a
// reconnection), lease flags come with a listing without a call per key, and a quiet watch resumes past a compaction
// of other keys' history without a resync (progress notifications).

import { Etcd3 } from 'etcd3';
import { get as httpGet } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LeaseManager } from '../../src/control/lease-manager';
import { formatLeaseAttrs, subnetKey, type Lease } from '../../src/control/lease';
import { startEtcd, type EtcdServer } from '../../src/lab/etcd-server';
import { backOffDelay, EtcdStore } from '../../src/store/etcd';
import { formatCidr, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { EventLog, eventually, freshPrefix, sleep } from './suite';

const test = suite('store: etcd is exact (transactions, listing, progress, back-off)');

let shared: Promise<EtcdServer> | undefined;
// Progress notifications every 300 ms instead of etcd's 10 minutes.
const server = () => (shared ??= startEtcd({ progressNotifyIntervalMs: 300 }));
test.after(async () => {
  await (await shared)?.stop();
  shared = undefined;
});

/** A raw etcd3 client, for what EtcdStore never does itself: transactions over several keys, compaction. */
async function withRawClient<T>(use: (client: Etcd3) => Promise<T>): Promise<T> {
  const client = new Etcd3({ hosts: `http://${(await server()).endpoint}` });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** A loopback port with no listener: connections are refused at once. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** A server that accepts connections and never answers: a hung member. */
async function silentServer(): Promise<{ endpoint: string; close(): void }> {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    },
  };
}

/**
 * A TCP proxy to `target` that can go silent: silence() stops moving bytes on every open connection (neither end is
 * closed or reset, as when a member's packets are dropped) and holds new ones the same way until resume().
 */
async function blackHoleProxy(target: string): Promise<{ endpoint: string; silence(): void; resume(): void; close(): void }> {
  const [host, port] = target.split(':');
  let silent = false;
  const pairs: Array<[Socket, Socket]> = [];
  const proxy = createServer((client) => {
    const upstream = connect(Number(port), host);
    pairs.push([client, upstream]);
    const pass = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (!silent && !muted.has(from)) to.write(chunk);
      });
    pass(client, upstream);
    pass(upstream, client);
    for (const socket of [client, upstream]) socket.on('error', () => {});
  });
  const muted = new Set<Socket>();
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    silence: () => {
      silent = true;
      for (const pair of pairs) for (const socket of pair) muted.add(socket);
    },
    resume: () => {
      silent = false; // connections silenced before stay silent, as a black-holed flow does
    },
    close: () => {
      for (const pair of pairs) for (const socket of pair) socket.destroy();
      proxy.close();
    },
  };
}

/** How many calls of a gRPC method the shared etcd has answered (its Prometheus counter grpc_server_handled_total). */
async function servedCalls(method: string): Promise<number> {
  const { endpoint } = await server();
  const text = await new Promise<string>((resolve, reject) => {
    httpGet(`http://${endpoint}/metrics`, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk));
      response.on('end', () => resolve(body));
      response.on('error', reject);
    }).on('error', reject);
  });
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('grpc_server_handled_total{') && line.includes(`grpc_method="${method}"`)) total += Number(line.split(' ').at(-1));
  }
  return total;
}

/** One etcd transaction (one revision) putting or deleting every key. */
async function txn(client: Etcd3, op: 'put' | 'delete', keys: string[], value = 'v'): Promise<number> {
  const success = keys.map((key) =>
    op === 'put'
      ? { request_put: { key: Buffer.from(key), value: Buffer.from(value) } }
      : { request_delete_range: { key: Buffer.from(key) } },
  );
  const response = await client.kv.txn({ compare: [], success, failure: [] });
  assert.ok(response.succeeded);
  return Number(response.header.revision);
}

test('every event of a multi-key transaction reaches a watcher, also across a reconnection', async () => {
  const store = EtcdStore.fromUrl((await server()).url);
  try {
    await withRawClient(async (client) => {
      const prefix = freshPrefix();
      const keys = ['a', 'b', 'c'].map((k) => prefix + k);
      const log = new EventLog();
      const watch = store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
      const putAt = await txn(client, 'put', keys, '1');
      await eventually('three puts', () => log.events.length >= 3, 5000);
      const deleteAt = await txn(client, 'delete', keys);
      await eventually('three deletes', () => log.events.length >= 6, 5000);
      await sleep(200);
      assert.equal(log.describe(), [...keys.map((k) => `put ${k}=1`), ...keys.map((k) => `delete ${k}`)]);
      assert.equal(log.revisions(), [putAt, putAt, putAt, deleteAt, deleteAt, deleteAt], 'one revision per transaction');

      // A reconnection resumes after the last revision completely delivered: nothing twice, nothing lost.
      watch.dropStream();
      const againAt = await txn(client, 'put', keys, '2');
      await eventually('three more puts after the reconnection', () => log.events.length >= 9, 10_000);
      await sleep(300);
      assert.equal(log.describe().slice(6), keys.map((k) => `put ${k}=2`));
      assert.equal(log.revisions().slice(6), [againAt, againAt, againAt]);
      assert.is(log.resyncs, 0);
      assert.is(watch.resumeRevision, againAt + 1);
      watch.close();
    });
  } finally {
    await store.close();
  }
});

test('a watch replaying history from an old revision gets every event of each transaction', async () => {
  const store = EtcdStore.fromUrl((await server()).url);
  try {
    await withRawClient(async (client) => {
      const prefix = freshPrefix();
      const keys = ['x', 'y', 'z'].map((k) => prefix + k);
      const from = (await store.list(prefix)).revision + 1;
      await txn(client, 'put', keys);
      await txn(client, 'delete', keys);
      const log = new EventLog();
      const watch = store.watch(prefix, from, log.handlers);
      await eventually('six replayed events', () => log.events.length >= 6, 5000);
      await sleep(200);
      assert.equal(log.describe(), [...keys.map((k) => `put ${k}=v`), ...keys.map((k) => `delete ${k}`)]);
      watch.close();
    });
  } finally {
    await store.close();
  }
});

test('three leases deleted (and three added) in one transaction: a LeaseManager watch keeps exactly the store\'s leases', async () => {
  const store = EtcdStore.fromUrl((await server()).url);
  const prefix = freshPrefix().replace(/\/$/, '');
  const manager = new LeaseManager({ store, prefix });
  const leaseKey = (i: number) => subnetKey(prefix, parseCidr(`10.17.${i}.0/24`));
  const attrs = (i: number) =>
    formatLeaseAttrs({ publicIp: parseIPv4(`192.0.2.${10 + i}`), backendType: 'vxlan', backendData: { vni: 1, vtepMac: parseMac(`0e:00:00:00:00:0${i}`) } });
  const known = new Map<string, Lease>();
  try {
    for (const i of [1, 2, 3, 4]) await store.put(leaseKey(i), attrs(i), { ttlSeconds: 3600 });
    const watch = await manager.watchLeases({
      onSnapshot: (leases) => {
        known.clear();
        for (const lease of leases) known.set(formatCidr(lease.subnet), lease);
      },
      onEvents: (events) => {
        for (const event of events) {
          if (event.type === 'added') known.set(formatCidr(event.lease.subnet), event.lease);
          else known.delete(formatCidr(event.lease.subnet));
        }
      },
    });
    try {
      assert.is(known.size, 4);
      await withRawClient(async (client) => {
        await txn(client, 'delete', [1, 2, 3].map(leaseKey));
        await eventually('the three leases to go', () => known.size === 1, 5000);
        await sleep(200);
        assert.equal([...known.keys()], ['10.17.4.0/24']);
        const added = [5, 6, 7];
        const response = await client.kv.txn({
          compare: [],
          success: added.map((i) => ({ request_put: { key: Buffer.from(leaseKey(i)), value: Buffer.from(attrs(i)) } })),
          failure: [],
        });
        assert.ok(response.succeeded);
        await eventually('the three new leases', () => known.size === 4, 5000);
      });
      const inStore = (await manager.listLeases()).leases.map((l) => formatCidr(l.subnet)).sort();
      assert.equal([...known.keys()].sort(), inStore, 'the watch\'s view equals the store\'s');
    } finally {
      watch.close();
    }
  } finally {
    await store.close();
  }
});

test('a listing says which keys have a TTL without asking etcd about each lease; get() says how long', async () => {
  const store = EtcdStore.fromUrl((await server()).url);
  try {
    const prefix = freshPrefix();
    for (let i = 0; i < 20; i++) await store.put(`${prefix}leased-${i}`, 'x', { ttlSeconds: 600 });
    await store.put(`${prefix}plain`, 'y');
    // etcd counts the calls it served: none for LeaseTimeToLive while listing.
    const before = await servedCalls('LeaseTimeToLive');
    const listed = await store.list(prefix);
    assert.is(await servedCalls('LeaseTimeToLive'), before, 'no call per key');
    assert.is(listed.kvs.length, 21);
    for (const kv of listed.kvs) {
      assert.is(kv.hasTtl, kv.key !== `${prefix}plain`, kv.key);
      assert.is(kv.ttlSeconds, undefined);
    }
    const one = await store.get(`${prefix}leased-0`);
    assert.is(await servedCalls('LeaseTimeToLive'), before + 1, 'get asks for the seconds left');
    assert.ok(one?.hasTtl && one.ttlSeconds !== undefined && one.ttlSeconds > 590 && one.ttlSeconds <= 600, `ttl ${one?.ttlSeconds}`);
  } finally {
    await store.close();
  }
});

test('a quiet watch resumes past a compaction of other keys\' history without a resync (progress notifications)', async () => {
  const etcd = await startEtcd({ progressNotifyIntervalMs: 300 });
  const store = EtcdStore.fromUrl(etcd.url, { maxReconnectDelayMs: 500 });
  const writer = EtcdStore.fromUrl(etcd.url);
  try {
    const quiet = freshPrefix();
    const busy = freshPrefix();
    const log = new EventLog();
    const watch = store.watch(quiet, (await store.list(quiet)).revision + 1, log.handlers);
    await store.put(`${quiet}k`, 'before');
    await eventually('the watch to run', () => log.events.length === 1, 5000);
    for (let i = 0; i < 5; i++) await writer.put(`${busy}k${i}`, String(i));
    const last = (await writer.list(busy)).revision;
    await eventually('a progress notification past the other keys\' writes', () => watch.resumeRevision > last, 5000);
    await etcd.compact(last);
    await etcd.restart({ downForMs: 200 });
    await eventually('the watch to notice the restart', () => log.connection.includes(false), 10_000);
    await eventually('the watch to reconnect', () => log.connection.at(-1) === true, 15_000);
    await eventually('a write after the restart', async () => writer.put(`${quiet}k`, 'after').then(() => true, () => false), 10_000);
    await eventually('the event after the restart', () => log.events.length === 2, 5000);
    assert.is(log.resyncs, 0, 'no resync: the watch resumed after the compacted revisions');
    assert.equal(log.describe(), [`put ${quiet}k=before`, `put ${quiet}k=after`]);
    watch.close();
  } finally {
    await writer.close();
    await store.close();
    await etcd.stop();
  }
});

test('reconnection back-off: full jitter below an exponential ceiling', () => {
  assert.is(backOffDelay(0, 5000, () => 0.999), 249);
  assert.is(backOffDelay(3, 5000, () => 0.5), 1000);
  assert.is(backOffDelay(10, 5000, () => 0.999), 4995, 'capped by the limit');
  assert.is(backOffDelay(1000, 5000, () => 0.5), 2500, 'no overflow after many failures');
  assert.is(backOffDelay(4, 5000, () => 0), 0, 'the floor is zero: agents cut off together spread out');
  const delays = Array.from({ length: 200 }, () => backOffDelay(4, 5000));
  assert.ok(new Set(delays).size > 50, 'random');
  assert.ok(delays.every((d) => d >= 0 && d < 4000));
});

test('with several endpoints, a dead one and a silent one cost a call nothing but a share of its time', async () => {
  const live = (await server()).endpoint;
  const dead = `127.0.0.1:${await closedPort()}`;
  const silent = await silentServer();
  const store = new EtcdStore([dead, silent.endpoint, live], { callTimeoutMs: 6000 });
  try {
    const prefix = freshPrefix();
    for (let i = 0; i < 8; i++) {
      const started = Date.now();
      await store.put(`${prefix}k`, String(i));
      assert.is((await store.get(`${prefix}k`))?.value, String(i));
      assert.ok(Date.now() - started < 5000, `call ${i} took ${Date.now() - started} ms`);
    }
  } finally {
    await store.close();
    silent.close();
  }
});

test('a watch through a connection that goes silent (no reset) notices within 15 s (gRPC keepalive) and comes back', async () => {
  const proxy = await blackHoleProxy((await server()).endpoint);
  const store = new EtcdStore([proxy.endpoint], { maxReconnectDelayMs: 500 });
  try {
    const prefix = freshPrefix();
    const log = new EventLog();
    const watch = store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
    await store.put(`${prefix}k`, 'before');
    await eventually('the watch to deliver (it is established)', () => log.events.length === 1, 5000);
    proxy.silence();
    const silencedAt = Date.now();
    // Keepalive: a ping after 10 s, 5 s for its answer. Without it TCP would take minutes; the bound leaves room for a
    // loaded machine while still telling the two apart.
    await eventually('the watch to notice the silence', () => log.connection.includes(false), 40_000);
    const noticedMs = Date.now() - silencedAt;
    assert.ok(noticedMs <= 30_000, `noticed after ${noticedMs} ms (keepalive: a ping after 10 s, 5 s for its answer)`);
    proxy.resume(); // new connections pass again; the silent ones stay silent
    // gRPC's channel reconnect back-off (growing by 1.6 per failed try while the proxy was silent) decides when.
    await eventually('the watch to come back', () => log.connection.at(-1) === true, 60_000);
    await store.put(`${prefix}k`, 'after');
    await eventually('an event after the silence', () => log.events.length === 2, 5000);
    assert.is(log.resyncs, 0);
    process.stdout.write(`  (a silent connection noticed after ${noticedMs} ms)\n`);
  } finally {
    await store.close();
    proxy.close();
  }
});

test.run();
