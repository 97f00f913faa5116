// One behaviour suite for every Store implementation: whatever the backend, callers see the same semantics.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { StoreError, type Store, type WatchEvent } from '../../src/store/store';

export interface OpenedStore {
  store: Store;
  cleanup(): Promise<void>;
  /** A second client on the same backend (another agent), when the backend can have one. */
  peer?(): Promise<Store>;
}

export interface StoreSuiteOptions {
  /** The store keeps history, so a watch from an old revision replays deletes too (etcd, memory). */
  replaysHistory?: boolean;
  /**
   * The watch polls, so several writes of one key between two looks reach it as the last one (file).
   * Writes whose every step must be seen are spaced by this many milliseconds.
   */
  coalescingPauseMs?: number;
  /** Runs once after the suite (e.g. stops a server shared by its tests). */
  after?: () => Promise<void>;
}

let prefixCounter = 0;
/** A fresh key prefix per test, so tests sharing one backend (etcd) do not see each other. */
export function freshPrefix(): string {
  return `/vxt-test/${process.pid}-${Date.now().toString(36)}-${prefixCounter++}/`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or `timeoutMs` passes; fails with `what` on timeout. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.unreachable(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(25);
  }
}

/** Asserts that `attempt` rejects with a message matching `pattern`; returns the error. */
export async function rejects(attempt: () => Promise<unknown>, pattern: RegExp): Promise<Error> {
  try {
    await attempt();
  } catch (error) {
    assert.instance(error, Error);
    assert.match((error as Error).message, pattern);
    return error as Error;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
  throw new Error('unreachable');
}

/** Collects watch events and tells what arrived, for assertions. */
export class EventLog {
  readonly events: WatchEvent[] = [];
  batches = 0;
  resyncs = 0;
  readonly connection: boolean[] = [];
  readonly handlers = {
    onEvents: (events: WatchEvent[]) => {
      this.batches++;
      this.events.push(...events);
    },
    onResync: () => {
      this.resyncs++;
    },
    onConnectionChange: (connected: boolean) => {
      this.connection.push(connected);
    },
  };

  describe(): string[] {
    return this.events.map((e) => (e.type === 'put' ? `put ${e.kv.key}=${e.kv.value}` : `delete ${e.key}`));
  }

  revisions(): number[] {
    return this.events.map((e) => (e.type === 'put' ? e.kv.modRevision : e.modRevision));
  }
}

export function storeSuite(name: string, open: () => Promise<OpenedStore>, options: StoreSuiteOptions = {}): void {
  const test = suite(`store: ${name}`);
  const pause = () => sleep(options.coalescingPauseMs ?? 0);
  if (options.after) test.after(options.after);

  async function withStore(body: (store: Store, opened: OpenedStore) => Promise<void>): Promise<void> {
    const opened = await open();
    try {
      await body(opened.store, opened);
    } finally {
      await opened.store.close();
      await opened.cleanup();
    }
  }

  test('get, put, delete', () =>
    withStore(async (store) => {
      const key = `${freshPrefix()}a`;
      assert.is(await store.get(key), undefined);
      assert.ok(await store.put(key, '{"x":1}'));
      const first = await store.get(key);
      assert.ok(first);
      assert.is(first.key, key);
      assert.is(first.value, '{"x":1}');
      assert.ok(first.modRevision > 0);
      assert.is(first.hasTtl, false);
      assert.is(first.ttlSeconds, undefined);

      assert.ok(await store.put(key, 'second'));
      const second = await store.get(key);
      assert.is(second?.value, 'second');
      assert.ok(second!.modRevision > first.modRevision, 'overwrite gets a newer revision');

      assert.is(await store.delete(key), true);
      assert.is(await store.get(key), undefined);
      assert.is(await store.delete(key), false, 'deleting a missing key reports false');
    }));

  test('keys and values survive unusual characters', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const keys = [`${prefix}10.17.1.0-24`, `${prefix}with space/and%percent`, `${prefix}ünïcode`, `${prefix}.hidden`];
      for (const key of keys) assert.ok(await store.put(key, `value of ${key}\n"quoted"`));
      for (const key of keys) assert.is((await store.get(key))?.value, `value of ${key}\n"quoted"`);
      assert.equal((await store.list(prefix)).kvs.map((kv) => kv.key), [...keys].sort());
    }));

  test('list returns only keys under the prefix, sorted, with the store revision', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      await store.put(`${prefix}subnets/10.17.2.0-24`, 'b');
      await store.put(`${prefix}subnets/10.17.1.0-24`, 'a');
      await store.put(`${prefix}subnetsX`, 'not under subnets/');
      await store.put(`${prefix}config`, 'c');
      const listed = await store.list(`${prefix}subnets/`);
      assert.equal(
        listed.kvs.map((kv) => [kv.key, kv.value]),
        [
          [`${prefix}subnets/10.17.1.0-24`, 'a'],
          [`${prefix}subnets/10.17.2.0-24`, 'b'],
        ],
      );
      const newest = Math.max(...listed.kvs.map((kv) => kv.modRevision));
      assert.ok(listed.revision >= newest, 'listing revision covers its keys');
      assert.equal((await store.list(`${prefix}nothing/`)).kvs, []);
      assert.is((await store.list(prefix)).kvs.length, 4);
    }));

  test('revisions increase store-wide', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const before = (await store.list(prefix)).revision;
      const revisions: number[] = [];
      for (const key of ['a', 'b', 'a', 'c']) {
        await store.put(prefix + key, key);
        revisions.push((await store.get(prefix + key))!.modRevision);
      }
      assert.ok(revisions[0] > before);
      for (let i = 1; i < revisions.length; i++) assert.ok(revisions[i] > revisions[i - 1], `revisions ${revisions}`);
      await store.delete(`${prefix}a`);
      assert.ok((await store.list(prefix)).revision > revisions[3], 'a delete is a change too');
    }));

  test('ifAbsent creates once', () =>
    withStore(async (store) => {
      const key = `${freshPrefix()}lease`;
      assert.is(await store.put(key, 'first', { ifAbsent: true }), true);
      assert.is(await store.put(key, 'second', { ifAbsent: true }), false);
      assert.is((await store.get(key))?.value, 'first');
      await store.delete(key);
      assert.is(await store.put(key, 'third', { ifAbsent: true }), true, 'free again after delete');
      assert.is((await store.get(key))?.value, 'third');
    }));

  test('createRevision: set at creation, kept by rewrites (with or without TTL), listed and watched alike, new after a delete', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const key = `${prefix}k`;
      await store.put(key, '1', { ttlSeconds: 60 });
      const first = (await store.get(key))!;
      assert.is(first.createRevision, first.modRevision);
      const events: WatchEvent[] = [];
      const watch = store.watch(prefix, first.modRevision + 1, { onEvents: (batch) => events.push(...batch) });
      try {
        await store.put(key, '2', { ifModRevision: first.modRevision, ttlSeconds: 60 });
        await store.put(key, '3');
        const rewritten = (await store.get(key))!;
        assert.ok(rewritten.modRevision > first.modRevision);
        assert.is(rewritten.createRevision, first.createRevision, 'a rewrite keeps the creation');
        assert.is((await store.list(prefix)).kvs[0].createRevision, first.createRevision);
        await store.delete(key);
        await store.put(key, '4');
        const recreated = (await store.get(key))!;
        assert.is(recreated.createRevision, recreated.modRevision, 'created anew after a delete');
        const puts = () => events.flatMap((e) => (e.type === 'put' ? [e.kv.createRevision] : []));
        await eventually('the re-created key in the watch', () => puts().includes(recreated.createRevision), 3000);
        // A polling watch may coalesce the two rewrites into one event: each carries the first creation.
        assert.ok(puts().slice(0, -1).length > 0 && puts().slice(0, -1).every((r) => r === first.createRevision), String(puts()));
      } finally {
        watch.close();
      }
    }));

  test('ifModRevision is compare-and-swap', () =>
    withStore(async (store) => {
      const key = `${freshPrefix()}counter`;
      assert.is(await store.put(key, '1', { ifModRevision: 12345 }), false, 'absent key has no such revision');
      assert.is(await store.get(key), undefined);
      await store.put(key, '1');
      const first = (await store.get(key))!;
      assert.is(await store.put(key, '2', { ifModRevision: first.modRevision }), true);
      assert.is(await store.put(key, '3', { ifModRevision: first.modRevision }), false, 'stale revision loses');
      const second = (await store.get(key))!;
      assert.is(second.value, '2');
      assert.ok(second.modRevision > first.modRevision);
      assert.is(await store.put(key, '4', { ifModRevision: 0 }), false, 'revision 0 means absent');
      const other = `${freshPrefix()}fresh`;
      assert.is(await store.put(other, 'x', { ifModRevision: 0 }), true, 'revision 0 creates an absent key');
    }));

  test('invalid arguments are StoreError INVALID', () =>
    withStore(async (store) => {
      const key = `${freshPrefix()}k`;
      for (const attempt of [
        () => store.put('', 'x'),
        () => store.put(key, 'x', { ttlSeconds: 0 }),
        () => store.put(key, 'x', { ttlSeconds: -1 }),
        () => store.put(key, 'x', { ifModRevision: -2 }),
        () => store.get(''),
      ]) {
        try {
          await attempt();
          assert.unreachable('should have thrown');
        } catch (error) {
          assert.instance(error, StoreError);
          assert.is((error as StoreError).code, 'INVALID');
        }
      }
    }));

  test('TTL keys expire, are invisible, and a watch sees the delete; a plain put clears the TTL', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const start = (await store.list(prefix)).revision;
      const log = new EventLog();
      const watch = store.watch(prefix, start + 1, log.handlers);
      try {
        await store.put(`${prefix}short`, 'gone soon', { ttlSeconds: 1 });
        await store.put(`${prefix}kept`, 'will stay', { ttlSeconds: 1 });
        await pause();
        await store.put(`${prefix}kept`, 'will stay');
        const short = await store.get(`${prefix}short`);
        assert.ok(short?.ttlSeconds !== undefined && short.ttlSeconds >= 1 && short.ttlSeconds <= 2, `ttl ${short?.ttlSeconds}`);
        assert.is((await store.get(`${prefix}kept`))?.ttlSeconds, undefined);

        await eventually('the TTL key to vanish', async () => (await store.get(`${prefix}short`)) === undefined, 6000);
        assert.equal((await store.list(prefix)).kvs.map((kv) => kv.key), [`${prefix}kept`]);
        await eventually('the watch to see the expiry', () => log.events.some((e) => e.type === 'delete'), 3000);
        assert.equal(log.describe(), [
          `put ${prefix}short=gone soon`,
          `put ${prefix}kept=will stay`,
          `put ${prefix}kept=will stay`,
          `delete ${prefix}short`,
        ]);
        assert.is(await store.put(`${prefix}short`, 'again', { ifAbsent: true }), true, 'an expired key is absent');
      } finally {
        watch.close();
      }
    }));

  test('listings and watch events say whether a key has a TTL; only get() says how long is left', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const log = new EventLog();
      const watch = store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
      try {
        await store.put(`${prefix}leased`, 'l', { ttlSeconds: 600 });
        await store.put(`${prefix}reserved`, 'r');
        const listed = await store.list(prefix);
        assert.equal(
          listed.kvs.map((kv) => [kv.key, kv.hasTtl, kv.ttlSeconds]),
          [
            [`${prefix}leased`, true, undefined],
            [`${prefix}reserved`, false, undefined],
          ],
          'a listing carries the flag, not the seconds (etcd would need one call per key)',
        );
        const leased = await store.get(`${prefix}leased`);
        assert.is(leased?.hasTtl, true);
        assert.ok(leased?.ttlSeconds !== undefined && leased.ttlSeconds > 590 && leased.ttlSeconds <= 600, `ttl ${leased?.ttlSeconds}`);
        await eventually('both puts', () => log.events.length >= 2, 3000);
        assert.equal(
          log.events.map((e) => (e.type === 'put' ? [e.kv.key, e.kv.hasTtl, e.kv.ttlSeconds] : e.key)),
          [
            [`${prefix}leased`, true, undefined],
            [`${prefix}reserved`, false, undefined],
          ],
        );
        await pause();
        await store.put(`${prefix}leased`, 'now without a TTL');
        assert.is((await store.list(prefix)).kvs[0].hasTtl, false, 'a plain put clears the TTL');
      } finally {
        watch.close();
      }
    }));

  test('watch sees puts and deletes in order, in batches, asynchronously', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const from = (await store.list(prefix)).revision + 1;
      const log = new EventLog();
      const watch = store.watch(prefix, from, log.handlers);
      try {
        await store.put(`${prefix}a`, '1');
        await store.put(`${prefix}b`, '2');
        await store.put('/vxt-elsewhere/x', 'not watched');
        await pause();
        await store.delete(`${prefix}a`);
        await pause();
        await store.put(`${prefix}b`, '3');
        await eventually('four events', () => log.events.length >= 4, 3000);
        await sleep(100);
        assert.equal(log.describe(), [`put ${prefix}a=1`, `put ${prefix}b=2`, `delete ${prefix}a`, `put ${prefix}b=3`]);
        const revisions = log.revisions();
        for (let i = 1; i < revisions.length; i++) assert.ok(revisions[i] > revisions[i - 1], `in order: ${revisions}`);
        assert.ok(revisions[0] >= from);
        assert.ok(log.batches >= 1 && log.batches <= 4);
        await store.delete('/vxt-elsewhere/x');
      } finally {
        watch.close();
      }
    }));

  test('a handler is never called from inside put', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const log = new EventLog();
      const watch = store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
      try {
        const done = store.put(`${prefix}a`, '1');
        assert.is(log.events.length, 0);
        await done;
        await eventually('the event', () => log.events.length === 1, 3000);
      } finally {
        watch.close();
      }
    }));

  test('watch from an old revision replays what happened since', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      await store.put(`${prefix}old`, 'before');
      const from = (await store.list(prefix)).revision + 1;
      await store.put(`${prefix}a`, '1');
      await store.put(`${prefix}b`, '2');
      await store.put(`${prefix}gone`, 'x');
      await store.delete(`${prefix}gone`);
      await store.put(`${prefix}a`, '1b');
      const log = new EventLog();
      const watch = store.watch(prefix, from, log.handlers);
      try {
        if (options.replaysHistory) {
          await eventually('five replayed events', () => log.events.length >= 5, 3000);
          assert.equal(log.describe(), [
            `put ${prefix}a=1`,
            `put ${prefix}b=2`,
            `put ${prefix}gone=x`,
            `delete ${prefix}gone`,
            `put ${prefix}a=1b`,
          ]);
        } else {
          // Without history, the current state changed since `from` is what the watcher learns.
          await eventually('the current state', () => log.events.length >= 2, 3000);
          await sleep(100);
          const seen = log.describe();
          assert.ok(seen.includes(`put ${prefix}a=1b`), seen.join(', '));
          assert.ok(seen.includes(`put ${prefix}b=2`), seen.join(', '));
          assert.not.ok(seen.includes(`put ${prefix}old=before`), 'nothing from before `from`');
        }
        await store.put(`${prefix}c`, 'live');
        await eventually('live events after the replay', () => log.describe().at(-1) === `put ${prefix}c=live`, 3000);
      } finally {
        watch.close();
      }
    }));

  test('watch.close() stops events', () =>
    withStore(async (store) => {
      const prefix = freshPrefix();
      const log = new EventLog();
      const watch = store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
      await store.put(`${prefix}a`, '1');
      await eventually('the first event', () => log.events.length === 1, 3000);
      watch.close();
      watch.close(); // twice is harmless
      await store.put(`${prefix}a`, '2');
      await sleep(500);
      assert.is(log.events.length, 1);
    }));

  test('store.close() stops its watches and further calls fail', () =>
    withStore(async (store, opened) => {
      const prefix = freshPrefix();
      const log = new EventLog();
      const writer = opened.peer ? await opened.peer() : undefined;
      try {
        store.watch(prefix, (await store.list(prefix)).revision + 1, log.handlers);
        await (writer ?? store).put(`${prefix}a`, '1');
        await eventually('the first event', () => log.events.length === 1, 3000);
        await store.close();
        if (writer) {
          await writer.put(`${prefix}a`, '2');
          await sleep(500);
          assert.is(log.events.length, 1, 'a closed store delivers nothing');
        }
        try {
          await store.get(`${prefix}a`);
          assert.unreachable('a closed store should refuse calls');
        } catch (error) {
          assert.instance(error, StoreError);
        }
      } finally {
        await writer?.close();
      }
    }));

  test('a second client sees the first one\'s writes and watches them', async () => {
    const opened = await open();
    if (!opened.peer) {
      await opened.store.close();
      await opened.cleanup();
      return;
    }
    const other = await opened.peer();
    try {
      const prefix = freshPrefix();
      const log = new EventLog();
      const watch = other.watch(prefix, (await other.list(prefix)).revision + 1, log.handlers);
      await opened.store.put(`${prefix}lease`, 'mine', { ifAbsent: true });
      assert.is(await other.put(`${prefix}lease`, 'theirs', { ifAbsent: true }), false);
      assert.is((await other.get(`${prefix}lease`))?.value, 'mine');
      await eventually('the peer to see the put', () => log.events.length === 1, 3000);
      watch.close();
    } finally {
      await other.close();
      await opened.store.close();
      await opened.cleanup();
    }
  });

  test.run();
}
