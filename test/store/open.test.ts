// openStore chooses the store by the URL's scheme, from one map, and says what it expected otherwise.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EtcdStore } from '../../src/store/etcd';
import { FileStore } from '../../src/store/file';
import { MemoryStore } from '../../src/store/memory';
import { DEFAULT_STORE_URL, openStore } from '../../src/store/open';

const test = suite('store: openStore');

test('chooses by scheme', async () => {
  const file = openStore('file:/tmp/vxt-never-created');
  assert.instance(file, FileStore);
  assert.is(file.url, 'file:/tmp/vxt-never-created');
  const etcd = openStore('etcd://127.0.0.1:2379,127.0.0.2:2379');
  assert.instance(etcd, EtcdStore);
  assert.is(etcd.url, 'etcd://127.0.0.1:2379,127.0.0.2:2379');
  const memory = openStore('memory:');
  assert.instance(memory, MemoryStore);
  await Promise.all([file.close(), etcd.close(), memory.close()]);
});

test('the default is the embedded file store', () => {
  assert.is(DEFAULT_STORE_URL, 'file:/var/lib/vxtun/store');
  assert.instance(openStore(DEFAULT_STORE_URL), FileStore);
});

test('an unknown scheme names itself and the expected ones', () => {
  assert.throws(() => openStore('consul://127.0.0.1:8500'), (error: Error) =>
    error.message === 'unknown store type "consul" in "consul://127.0.0.1:8500" (expected file: or etcd://)');
  assert.throws(() => openStore('/var/lib/vxtun/store'), /unknown store type .*expected file: or etcd:\/\//);
  assert.throws(() => openStore('constructor:x'), /unknown store type "constructor"/);
});

test.run();
