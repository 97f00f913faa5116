// The network config in the store (flannel's <prefix>/config): read at start, written by `vxtun init`, and watched
// while the agent runs. flanneld reads the config once and keeps running with it until restarted; so do we, but a
// change under running agents (another VNI, port, backend, network) is said at once and kept visible in
// `vxtun status` as a mismatch between the running config and the stored one, since the two now disagree about
// the network.
import type { Store, Watch } from '../store/store';
import { configKey } from './lease';
import { errorText } from './lease-store';
import type { Logger } from './log';
import { type NetworkConfig, NetworkConfigError, networkConfigDifferences, parseNetworkConfig } from './network-config';

/** Reads and checks <prefix>/config; throws when it is missing (telling the user to run init) or invalid. */
export async function readNetworkConfig(store: Store, prefix: string): Promise<NetworkConfig> {
  const key = configKey(prefix);
  const kv = await store.get(key);
  if (!kv) throw new Error(`no network config at ${key}: run "vxtun init --network CIDR" first`);
  try {
    return parseNetworkConfig(kv.value);
  } catch (err) {
    if (err instanceof NetworkConfigError) throw new NetworkConfigError(`network config at ${key}: ${err.detail}`, err.detail);
    throw err;
  }
}

/**
 * Stores the network config after checking it. An existing, different config is only replaced with
 * `replace: true`: changing Network under running nodes strands their leases.
 */
export async function writeNetworkConfig(store: Store, prefix: string, json: string, options: { replace?: boolean } = {}): Promise<void> {
  parseNetworkConfig(json);
  const key = configKey(prefix);
  if (options.replace) {
    await store.put(key, json);
    return;
  }
  if (await store.put(key, json, { ifAbsent: true })) return;
  const existing = await store.get(key);
  if (existing && existing.value !== json) {
    throw new Error(`a different network config already exists at ${key}: ${existing.value} (replace it explicitly to change it)`);
  }
}

/** The stored config no longer means the network we run: shown by `vxtun status` until they agree again. */
export interface ConfigMismatch {
  /** The stored value as written, or "(deleted)". */
  stored: string;
  /** What differs, e.g. ["Backend.VNI 1 -> 2"], or why the stored value cannot be used. */
  differences: string[];
}

export interface ConfigWatch {
  /** Undefined while the stored config means the running one. */
  readonly mismatch: ConfigMismatch | undefined;
  close(): void;
}

/** Compares a stored value (undefined: the key is gone) with the running config. */
export function compareStoredConfig(running: NetworkConfig, stored: string | undefined): ConfigMismatch | undefined {
  if (stored === undefined) return { stored: '(deleted)', differences: ['the network config was deleted from the store'] };
  let parsed: NetworkConfig;
  try {
    parsed = parseNetworkConfig(stored);
  } catch (err) {
    return { stored, differences: [`the stored config is invalid: ${errorText(err)}`] };
  }
  const differences = networkConfigDifferences(running, parsed);
  return differences.length === 0 ? undefined : { stored, differences };
}

/**
 * Watches <prefix>/config against the running config: logs a warning at once when the stored one starts to differ
 * (and each time it changes again), and an info line when they agree again. The data plane is not touched: the
 * running config stays until the agent restarts, as flanneld's does. Store errors are the lease watch's to report.
 */
export async function watchNetworkConfig(store: Store, prefix: string, running: NetworkConfig, log: Logger): Promise<ConfigWatch> {
  const key = configKey(prefix);
  let mismatch: ConfigMismatch | undefined;
  let closed = false;
  let watch: Watch | undefined;

  const update = (stored: string | undefined): void => {
    const next = compareStoredConfig(running, stored);
    const was = mismatch;
    mismatch = next;
    if (next !== undefined && (was === undefined || was.stored !== next.stored)) {
      log.warn('the network config in the store differs from the one this agent runs with; restart the agent to use it', {
        key,
        differences: next.differences.join('; '),
      });
    } else if (next === undefined && was !== undefined) {
      log.info('the network config in the store matches the running one again', { key });
    }
  };

  const start = async (): Promise<void> => {
    const { kvs, revision } = await store.list(key);
    if (closed) return;
    update(kvs.find((kv) => kv.key === key)?.value);
    watch = store.watch(key, revision + 1, {
      onEvents: (events) => {
        for (const event of events) {
          if (event.type === 'put' && event.kv.key === key) update(event.kv.value);
          else if (event.type === 'delete' && event.key === key) update(undefined);
        }
      },
      onResync: () => {
        watch?.close();
        watch = undefined;
        start().catch((err: unknown) => log.warn('re-reading the network config failed', { key, error: errorText(err) }));
      },
    });
  };

  await start();
  return {
    get mismatch() {
      return mismatch;
    },
    close: () => {
      closed = true;
      watch?.close();
    },
  };
}
