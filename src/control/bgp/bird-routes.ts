// The routes our BIRD put into the kernel (`proto bird`), followed as they change: `ip monitor route` runs as a child
// process and each burst of its lines triggers one `ip -json route show table all proto bird`. iproute2 rather than
// netlink from Node: the agent already drives the kernel's routes with `ip` (io/kernel-routes.ts), route changes are a
// control-path event (a few per lease), and re-reading the whole (small) set after each burst can never drift the way
// applying single netlink messages could. The main table's routes are those BIRD programs itself (encap none, and the
// direct half of CrossSubnet); kernel table `ipipTable` holds the ones vxtun encapsulates (bird-config.ts).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { type Cidr, type IPv4, cidrContains, formatCidr, parseCidr, parseIPv4 } from '../../wire/address';
import type { Logger } from '../log';

const run = promisify(execFile);

export interface BirdKernelRoute {
  subnet: Cidr;
  /** The next hop: the owning node's underlay address (BGP next hop, resolved on the underlay). */
  gateway: IPv4;
  dev: string;
}

export interface BirdKernelRoutes {
  /** Main table: routed by the kernel without encapsulation. */
  main: BirdKernelRoute[];
  /** Kernel table `ipipTable`: vxtun's IP-in-IP routes. */
  ipip: BirdKernelRoute[];
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  gateway?: string;
  dev?: string;
  table?: string;
  nexthops?: { gateway?: string; dev?: string }[];
}

/**
 * Parses `ip -json route show table all proto bird`: unicast routes inside `network` with a gateway, split by table.
 * Blackholes (our own block) and routes outside the cluster network are left out; of a multipath route the first next
 * hop is kept (vxtun's tables hold one gateway per subnet).
 */
export function parseBirdRoutes(json: string, network: Cidr, ipipTable: number): BirdKernelRoutes {
  const out: BirdKernelRoutes = { main: [], ipip: [] };
  const rows = JSON.parse(json || '[]') as IpRouteJson[];
  for (const row of rows) {
    if ((row.type !== undefined && row.type !== 'unicast') || row.dst === undefined || row.dst === 'default') continue;
    const hop = row.gateway !== undefined ? { gateway: row.gateway, dev: row.dev } : row.nexthops?.find((h) => h.gateway !== undefined);
    if (hop?.gateway === undefined) continue;
    let subnet: Cidr;
    try {
      subnet = parseCidr(row.dst.includes('/') ? row.dst : `${row.dst}/32`);
    } catch {
      continue;
    }
    if (!cidrContains(network, subnet.address) || subnet.prefixLength < network.prefixLength) continue;
    const route = { subnet, gateway: parseIPv4(hop.gateway), dev: hop.dev ?? row.dev ?? '' };
    const table = row.table ?? 'main';
    if (table === 'main') out.main.push(route);
    else if (table === String(ipipTable)) out.ipip.push(route);
  }
  const order = (a: BirdKernelRoute, b: BirdKernelRoute): number => a.subnet.address - b.subnet.address;
  out.main.sort(order);
  out.ipip.sort(order);
  return out;
}

export interface BirdRouteFollowerOptions {
  network: Cidr;
  ipipTable: number;
  log: Logger;
  onChange: (routes: BirdKernelRoutes) => void;
  /** Coalesces a burst of `ip monitor` lines into one re-read (default 20 ms). */
  settleMs?: number;
}

const MONITOR_RESTART_MS = 1_000;

export class BirdRouteFollower {
  private monitor?: ChildProcess;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private reading = false;
  private again = false;
  private last = '';
  current: BirdKernelRoutes = { main: [], ipip: [] };

  constructor(private readonly options: BirdRouteFollowerOptions) {}

  async start(): Promise<void> {
    this.startMonitor();
    await this.refresh();
  }

  private startMonitor(): void {
    const child = spawn('ip', ['monitor', 'route'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.monitor = child;
    createInterface({ input: child.stdout! }).on('line', () => this.schedule());
    child.once('error', (err) => this.options.log.error('cannot run `ip monitor route` to follow BIRD\'s routes (is iproute2 installed?)', { error: err.message }));
    child.once('close', (code, signal) => {
      if (this.stopped || this.monitor !== child) return;
      this.options.log.warn('`ip monitor route` exited: restarting it; BGP routes are re-read meanwhile', { code: code ?? signal });
      setTimeout(() => {
        if (this.stopped) return;
        this.startMonitor();
        this.schedule();
      }, MONITOR_RESTART_MS).unref();
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, this.options.settleMs ?? 20);
  }

  /** Re-reads BIRD's kernel routes now; calls onChange when they differ from the last read. Never throws. */
  async refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    try {
      do {
        this.again = false;
        let stdout: string;
        try {
          ({ stdout } = await run('ip', ['-json', 'route', 'show', 'table', 'all', 'proto', 'bird'], { timeout: 10_000, maxBuffer: 64 * 1024 * 1024 }));
        } catch (err) {
          this.options.log.error('cannot read BIRD\'s kernel routes (`ip -json route show table all proto bird`)', { error: (err as Error).message });
          return;
        }
        const routes = parseBirdRoutes(stdout, this.options.network, this.options.ipipTable);
        const key = JSON.stringify([routes.main.map(describe), routes.ipip.map(describe)]);
        if (key !== this.last && !this.stopped) {
          this.last = key;
          this.current = routes;
          this.options.onChange(routes);
        }
      } while (this.again && !this.stopped);
    } finally {
      this.reading = false;
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.monitor?.kill('SIGTERM');
  }
}

function describe(route: BirdKernelRoute): string {
  return `${formatCidr(route.subnet)}>${route.gateway}`;
}

/** Runs `ip` with these arguments; rejects with the child's error (its `stderr` attached) when it fails. */
export type IpCommand = (args: string[]) => Promise<{ stdout: string }>;

const runIp: IpCommand = (args) => run('ip', args, { timeout: 10_000 });

/** iproute2's answer for a table nobody ever created (encap none never creates the IP-in-IP table). */
const NO_SUCH_TABLE = /FIB table does not exist/;

/**
 * Deletes the `proto bird` routes inside `network` from the main table and from `ipipTable`: what BIRD leaves behind
 * with `persist` once the agent has stopped it. Returns how many were deleted; a route already gone, or a table that
 * does not exist, is no error: there is nothing to delete.
 */
export async function flushBirdRoutes(network: Cidr, ipipTable: number, ip: IpCommand = runIp): Promise<number> {
  let deleted = 0;
  for (const table of ['main', String(ipipTable)]) {
    let stdout: string;
    try {
      ({ stdout } = await ip(['-json', 'route', 'show', 'table', table, 'root', formatCidr(network), 'proto', 'bird']));
    } catch (err) {
      if (NO_SUCH_TABLE.test(String((err as { stderr?: string }).stderr))) continue;
      throw err;
    }
    const rows = JSON.parse(stdout || '[]') as IpRouteJson[];
    for (const row of rows) {
      if (row.dst === undefined) continue;
      const args = ['route', 'del', ...(row.type && row.type !== 'unicast' ? [row.type] : []), row.dst, 'table', table, 'proto', 'bird'];
      try {
        await ip(args);
        deleted++;
      } catch (err) {
        if (!/No such process/.test(String((err as { stderr?: string }).stderr))) throw err;
      }
    }
  }
  return deleted;
}
