// The --store option every store-using command shares, and opening/closing the store around a command.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { FileStore } from '../store/file';
import { DEFAULT_STORE_URL, openStore } from '../store/open';
import type { Store } from '../store/store';
import { storeUrl } from './parse';

export function storeOption(command: Command): Command {
  return command.option('--store <url>', 'file:PATH (embedded, one host) or etcd://HOST:PORT[,HOST:PORT...]', storeUrl, DEFAULT_STORE_URL);
}

/**
 * Opens the store for the command. With `mustExist`, a file: store whose directory does not exist is an error (a
 * mistyped path), not a new empty store: reading one would create the directory and print nothing.
 */
export async function withStore<T>(url: string, run: (store: Store) => Promise<T>, options: { mustExist?: boolean } = {}): Promise<T> {
  if (options.mustExist && /^file:/i.test(url)) {
    const { dir } = FileStore.fromUrl(url);
    if (!existsSync(dir)) throw new Error(`no store at ${dir}: the directory does not exist (\`vxtun init --store file:${dir}\` makes one)`);
  }
  const store = openStore(url);
  try {
    return await run(store);
  } finally {
    await store.close();
  }
}
