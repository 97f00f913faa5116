// Choosing a store by the scheme of its URL, from one explicit map.

import { EtcdStore } from './etcd';
import { FileStore } from './file';
import { MemoryStore } from './memory';
import type { Store } from './store';

/** The embedded store of a single machine, when no --store is given. */
export const DEFAULT_STORE_URL = 'file:/var/lib/vxtun/store';

const STORES: Record<string, (url: string) => Store> = {
  file: (url) => FileStore.fromUrl(url),
  etcd: (url) => EtcdStore.fromUrl(url),
  // In-process only, for tests and demos: nothing is shared with other processes.
  memory: (url) => new MemoryStore({ url }),
};

export function openStore(url: string): Store {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1];
  const open = scheme !== undefined && Object.hasOwn(STORES, scheme.toLowerCase()) ? STORES[scheme.toLowerCase()] : undefined;
  if (!open) {
    const shown = scheme ?? url;
    throw new Error(`unknown store type "${shown}" in "${url}" (expected file: or etcd://)`);
  }
  return open(url);
}
