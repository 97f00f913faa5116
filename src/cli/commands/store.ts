// `vxtun store get|put|del|ls`: inspect and edit any store, as etcdctl does for etcd.
import type { Command } from 'commander';
import { integerIn } from '../parse';
import { storeOption, withStore } from '../store-option';

export function storeCommand(program: Command): void {
  const store = program.command('store').description('inspect and edit the store (keys and values, like etcdctl)');
  storeOption(store.command('get <key>').description('print the value of a key')).action(async (key: string, opts) =>
    withStore(opts.store, async (s) => {
      const kv = await s.get(key);
      if (kv === undefined) throw new Error(`key not found: ${key}`);
      process.stdout.write(`${kv.value}\n`);
    }, { mustExist: true }),
  );
  storeOption(
    store
      .command('put <key> <value>')
      .description('write a value')
      .option('--ttl <seconds>', 'expire the key unless written again', integerIn(1, 10 * 365 * 86400)),
  ).action(async (key: string, value: string, opts) =>
    withStore(opts.store, async (s) => {
      await s.put(key, value, { ttlSeconds: opts.ttl });
    }),
  );
  storeOption(store.command('del <key>').description('delete a key')).action(async (key: string, opts) =>
    withStore(opts.store, async (s) => {
      if (!(await s.delete(key))) throw new Error(`key not found: ${key}`);
    }, { mustExist: true }),
  );
  storeOption(
    store
      .command('ls [prefix]')
      .description('list keys under a prefix (all keys when left out)')
      .option('--values', 'print each value after its key'),
  ).action(async (prefix: string | undefined, opts) =>
    withStore(opts.store, async (s) => {
      const { kvs } = await s.list(prefix ?? '/');
      for (const kv of kvs) process.stdout.write(opts.values ? `${kv.key} ${kv.value}\n` : `${kv.key}\n`);
    }, { mustExist: true }),
  );
}
