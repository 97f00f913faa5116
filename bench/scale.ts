// The control plane at scale, on a real etcd: 5,000 leases, then
//   (i)  an agent's control plane from start to a full table (5,000 routes), and
//   (ii) how long a new lease takes to reach a running agent's table (median and p99 over 50 new leases).
// The agent under test is its control plane only, in-process: EtcdStore -> LeaseManager (acquire, watch) -> LeaseSync
// -> ForwardingTables, exactly what `vxtun agent` runs before and beside its data plane, without a TUN device. So the
// figures are the store and control plane's alone.
//
// `node -r tsx/cjs bench/scale.ts [--leases N] [--new N]`, or `npm run bench -- --only scale`.
import { performance } from 'node:perf_hooks';
import { LeaseManager } from '../src/control/lease-manager';
import { DEFAULT_PREFIX, type LeaseAttrs, configKey, formatLeaseAttrs, subnetKey } from '../src/control/lease';
import { LeaseSync } from '../src/control/lease-sync';
import { nullLogger } from '../src/control/log';
import { formatNetworkConfig } from '../src/control/network-config';
import { ForwardingTables } from '../src/dataplane/tables';
import { startEtcd } from '../src/lab/etcd-server';
import { EtcdStore } from '../src/store/etcd';
import { type Cidr, formatCidr, parseCidr, parseIPv4 } from '../src/wire/address';

export interface ScaleOptions {
  /** Leases loaded before the agent starts; default 5,000. */
  leases?: number;
  /** New leases written one at a time into the running agent's watch; default 50. */
  newLeases?: number;
  log?: (line: string) => void;
}

export interface ScaleResult {
  leases: number;
  etcdVersion: string;
  loadSeconds: number;
  /** From opening the store to a table holding a route per other lease. */
  startToFullTableMs: number;
  /** Its parts: acquiring our own lease (reads the config, lists every lease), then listing again and syncing. */
  acquireMs: number;
  snapshotMs: number;
  routes: number;
  /** Write start (lease grant + put) to the route in the running agent's table, one new lease at a time. */
  propagationMs: { count: number; median: number; p99: number; max: number; samples: number[] };
}

const NETWORK = parseCidr('10.0.0.0/8'); // room for 65,536 /24 leases
const LOAD_CONCURRENCY = 64;
const LEASE_TTL_SECONDS = 86_400; // flannel's
const ARRIVAL_TIMEOUT_MS = 10_000;

/** Lease i of the load: 10.x.y.0/24 from i + 1 (10.0.0.0/24 left free), an underlay address and a MAC of its own. */
function loadLease(i: number): { subnet: Cidr; attrs: LeaseAttrs } {
  const n = i + 1;
  return {
    subnet: { address: NETWORK.address + n * 256, prefixLength: 24 },
    attrs: {
      publicIp: parseIPv4(`198.51.100.${(n % 250) + 1}`), // never sent to: the agent here has no data plane
      backendType: 'vxlan',
      backendData: { vni: 1, vtepMac: 0x0e0000000000 + n },
    },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runScale(options: ScaleOptions = {}): Promise<ScaleResult> {
  const leaseCount = options.leases ?? 5_000;
  const newCount = options.newLeases ?? 50;
  const log = options.log ?? (() => undefined);
  const etcd = await startEtcd();
  const writer = EtcdStore.fromUrl(etcd.url);
  let agentStore: EtcdStore | undefined;
  let watch: { close(): void } | undefined;
  try {
    const etcdVersion = await etcdServerVersion(etcd.endpoint);
    await writer.put(configKey(DEFAULT_PREFIX), formatNetworkConfig({ network: NETWORK, subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));

    log(`loading ${leaseCount.toLocaleString('en-US')} leases into etcd ${etcdVersion} at ${etcd.endpoint}...`);
    const loadStarted = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, async () => {
      while (next < leaseCount) {
        const { subnet, attrs } = loadLease(next++);
        await writer.put(subnetKey(DEFAULT_PREFIX, subnet), formatLeaseAttrs(attrs), { ttlSeconds: LEASE_TTL_SECONDS });
      }
    }));
    const loadSeconds = (performance.now() - loadStarted) / 1000;

    // (i) start to a full table, as the agent starts: open the store, acquire our lease, watch the others into tables.
    log('starting the agent control plane...');
    const tables = new ForwardingTables();
    const arrivals = new Map<string, (at: number) => void>();
    let sync: LeaseSync | undefined;
    const started = performance.now();
    agentStore = EtcdStore.fromUrl(etcd.url);
    const manager = new LeaseManager({ store: agentStore });
    const own = await manager.acquire({ publicIp: parseIPv4('192.0.2.1'), backendType: 'vxlan', backendData: { vni: 1, vtepMac: 0x0e00000000ff } });
    const acquired = performance.now();
    const liveSync = new LeaseSync({ tables }, own.subnet, 'vxlan', nullLogger);
    sync = liveSync;
    let full: () => void = () => undefined;
    const isFull = new Promise<void>((resolve) => (full = resolve));
    const checkFull = (): void => {
      if (tables.routes.size >= leaseCount) full();
    };
    watch = await manager.watchLeases({
      onSnapshot: (leases) => {
        liveSync.applySnapshot(leases);
        checkFull();
      },
      onEvents: (events) => {
        liveSync.applyEvents(events);
        const at = performance.now();
        for (const event of events) if (event.type === 'added') arrivals.get(formatCidr(event.lease.subnet))?.(at);
        checkFull();
      },
    });
    await isFull;
    const fullAt = performance.now();
    const routes = tables.routes.size;
    if (sync.leases.length !== leaseCount) throw new Error(`the table holds ${sync.leases.length} leases, expected ${leaseCount}`);

    // (ii) new leases, one at a time, from the writer's first call to the route in the running agent's table.
    log(`writing ${newCount} new leases into the running agent's watch...`);
    const samples: number[] = [];
    for (let j = 0; j < newCount; j++) {
      const { subnet, attrs } = loadLease(leaseCount + 1 + j);
      const key = formatCidr(subnet);
      const arrived = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`lease ${key} did not reach the agent within ${ARRIVAL_TIMEOUT_MS} ms`)), ARRIVAL_TIMEOUT_MS);
        arrivals.set(key, (at) => {
          clearTimeout(timer);
          resolve(at);
        });
      });
      const writeStarted = performance.now();
      await writer.put(subnetKey(DEFAULT_PREFIX, subnet), formatLeaseAttrs(attrs), { ttlSeconds: LEASE_TTL_SECONDS });
      samples.push((await arrived) - writeStarted);
      arrivals.delete(key);
      if (tables.routes.lookup(subnet.address + 1) === undefined) throw new Error(`no route for ${key} after its event`);
      await new Promise((resolve) => setTimeout(resolve, 10)); // one at a time, not a burst
    }
    const sorted = [...samples].sort((a, b) => a - b);
    return {
      leases: leaseCount,
      etcdVersion,
      loadSeconds,
      startToFullTableMs: fullAt - started,
      acquireMs: acquired - started,
      snapshotMs: fullAt - acquired,
      routes,
      propagationMs: { count: samples.length, median: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN, samples },
    };
  } finally {
    watch?.close();
    await agentStore?.close();
    await writer.close();
    await etcd.stop();
  }
}

async function etcdServerVersion(endpoint: string): Promise<string> {
  try {
    const response = await fetch(`http://${endpoint}/version`);
    return ((await response.json()) as { etcdserver?: string }).etcdserver ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function formatScale(result: ScaleResult): string {
  const n = result.leases.toLocaleString('en-US');
  const ms = (value: number): string => `${value.toFixed(1)} ms`;
  const p = result.propagationMs;
  const row = (label: string, figure: string): string => `  ${label.padEnd(48)}${figure}`;
  return [
    `scale: ${n} leases in a real etcd ${result.etcdVersion} (one member, 127.0.0.1); the agent's control plane in-process`,
    '(EtcdStore -> LeaseManager -> LeaseSync -> ForwardingTables, no TUN)',
    row(`load ${n} leases (TTL 24 h, ${LOAD_CONCURRENCY} writers)`, `${result.loadSeconds.toFixed(1)} s`),
    row(`start -> full table (${result.routes.toLocaleString('en-US')} routes)`,
      `${ms(result.startToFullTableMs)}  (acquire own lease ${ms(result.acquireMs)}, list + sync ${ms(result.snapshotMs)})`),
    row(`new lease -> running agent's table (${p.count} leases)`, `median ${ms(p.median)}, p99 ${ms(p.p99)}, max ${ms(p.max)}`),
  ].join('\n');
}

function parseArgs(argv: readonly string[]): ScaleOptions {
  const options: ScaleOptions = {};
  for (let i = 0; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value < 1 || value > 60_000) throw new Error(`${argv[i]} needs an integer 1-60000`);
    if (argv[i] === '--leases') options.leases = value;
    else if (argv[i] === '--new') options.newLeases = value;
    else throw new Error(`unknown option ${argv[i]}; usage: node -r tsx/cjs bench/scale.ts [--leases N] [--new N]`);
  }
  return options;
}

if (require.main === module) {
  runScale({ ...parseArgs(process.argv.slice(2)), log: (line) => process.stderr.write(`${line}\n`) })
    .then((result) => process.stdout.write(`${formatScale(result)}\n`))
    .catch((error: unknown) => {
      process.stderr.write(`bench/scale: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
      process.exit(1);
    });
}
