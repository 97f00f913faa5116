// The --store option every store-using command shares, and opening/closing the store around a command.
import type { Command } from 'commander';
import { DEFAULT_STORE_URL, openStore } from '../store/open';
import type { Store } from '../store/store';

export function storeOption(command: Command): Command {
  return command.option('--store <url>', 'file:PATH (embedded, one host) or etcd://HOST:PORT[,HOST:PORT...]', DEFAULT_STORE_URL);
}

export async function withStore<T>(url: string, run: (store: Store) => Promise<T>): Promise<T> {
  const store = openStore(url);
  try {
    return await run(store);
  } finally {
    await store.close();
  }
}
