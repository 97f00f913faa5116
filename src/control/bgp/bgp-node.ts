// The bgp backend of one node: the store stays the IPAM and the list of peers, BIRD carries the routes.
//   leases (snapshot / events) -> renderBirdConfig -> bird.conf (temp file + rename) -> `birdc configure`
//   BIRD -> kernel: main table (encap none, CrossSubnet's direct half), table 201 (IP-in-IP) -> BirdRouteFollower
//        -> ForwardingTables (route subnet -> gateway = next-hop underlay address, encap ipip)
//   `birdc show protocols all` every few seconds -> status (peers, readiness) and one log line per session change.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ForwardingTables } from '../../dataplane/tables';
import { type Cidr, cidrEquals, formatCidr, formatIPv4 } from '../../wire/address';
import type { Lease } from '../lease';
import type { LeaseEvent } from '../lease-manager';
import type { Logger } from '../log';
import type { BgpBackendConfig, NetworkConfig } from '../network-config';
import { DEFAULT_IPIP_KERNEL_TABLE, renderBirdConfig } from './bird-config';
import { BirdSupervisor } from './bird-process';
import { type BirdKernelRoute, type BirdKernelRoutes, BirdRouteFollower, flushBirdRoutes } from './bird-routes';
import { type BirdProtocol, birdConfigure, birdc, showProtocols } from './birdc';

export interface BgpNodeOptions {
  lease: Lease;
  config: NetworkConfig;
  underlay: { name: string; subnet: Cidr };
  /** Holds bird.conf, bird.ctl and bird.pid (created if missing). */
  dir: string;
  log: Logger;
  /** The IP-in-IP data plane's tables (encap ipip / ipip-crosssubnet); absent for encap none. */
  tables?: ForwardingTables;
  kernelTable?: number;
  /** How often `birdc show protocols all` is asked (default 2000 ms). */
  statusIntervalMs?: number;
  /** Lease events are gathered this long before one re-render and configure (default 100 ms). */
  settleMs?: number;
  birdPath?: string;
  birdcPath?: string;
}

/** One BGP session as `birdc show protocols` shows it. */
export interface BgpPeerStatus {
  name: string;
  address?: string;
  /** BIRD's protocol state: up, start, down. */
  state: string;
  /** BGP session state: Established, Active, Connect, Passive, ... */
  session: string;
  since: string;
  info: string;
  lastError?: string;
  /** For a session not Established: what to check, from BIRD's state and reason. */
  hint?: string;
  routes?: { imported: number; exported: number; preferred: number };
}

export interface BgpStatus {
  as: number;
  encap: BgpBackendConfig['encap'];
  routeReflectors: string[];
  gracefulRestart: number;
  bfd: boolean;
  bird: { running: boolean; pid?: number; restarts: number; config: string; socket: string; lastError?: string };
  peers: BgpPeerStatus[];
  /** Routes BIRD imported from its peers and exported to them (sums over the sessions). */
  routes: { imported: number; exported: number };
  /** Calico's rule: during start-up every peer Established; afterwards at least one (or no peers at all). */
  ready: boolean;
  /** Every peer has been Established at least once since start (start-up is over). */
  startupDone: boolean;
  kernelTable: number;
}

const DEFAULT_STATUS_INTERVAL_MS = 2_000;
/** Lease events within this window are rendered and configured together. */
const DEFAULT_SETTLE_MS = 100;
/** start() waits this long for BIRD's control socket to answer. */
const BIRD_ANSWER_TIMEOUT_MS = 10_000;
/** A session not Established this long is logged (once) with BIRD's reason. */
const DOWN_REPORT_MS = 10_000;

export class BgpNode {
  private readonly leases = new Map<string, Lease>();
  private readonly bird: BirdSupervisor;
  private readonly follower: BirdRouteFollower;
  private readonly backend: BgpBackendConfig;
  private readonly kernelTable: number;
  private readonly paths: { config: string; socket: string; pidFile: string };
  private rendered = '';
  /** The text BIRD confirmed with `configure` ('' = unknown: a fresh or restarted BIRD, a failed configure). */
  private configured = '';
  private configuring: Promise<void> = Promise.resolve();
  private pollTimer?: NodeJS.Timeout;
  private protocols: BirdProtocol[] = [];
  private pollError?: string;
  private pendingReconfigure?: Promise<void>;
  private configureError?: string;
  private startupDone = false;
  /** Per session: last state seen, since when it is not Established, whether that was reported. */
  private readonly sessions = new Map<string, { established: boolean; downSince: number; reported: boolean }>();
  /** IP-in-IP routes applied to the tables, by subnet. */
  private readonly applied = new Map<string, BirdKernelRoute>();
  private stopped = false;

  constructor(private readonly options: BgpNodeOptions) {
    const backend = options.config.backend;
    if (backend.type !== 'bgp') throw new Error(`BgpNode needs a bgp backend, got ${backend.type}`);
    this.backend = backend;
    this.kernelTable = options.kernelTable ?? DEFAULT_IPIP_KERNEL_TABLE;
    mkdirSync(options.dir, { recursive: true });
    this.paths = { config: join(options.dir, 'bird.conf'), socket: join(options.dir, 'bird.ctl'), pidFile: join(options.dir, 'bird.pid') };
    this.leases.set(formatCidr(options.lease.subnet), options.lease);
    this.bird = new BirdSupervisor({
      paths: this.paths, log: options.log, birdPath: options.birdPath, gracefulRestart: backend.gracefulRestart > 0,
      // A (re)started BIRD read some version of the file: the next poll makes sure it runs the latest one.
      onSpawn: () => { this.configured = ''; },
    });
    this.follower = new BirdRouteFollower({
      network: options.config.network,
      ipipTable: this.kernelTable,
      log: options.log,
      onChange: (routes) => this.applyKernelRoutes(routes),
    });
  }

  get configPath(): string {
    return this.paths.config;
  }

  /** Writes the first config (our block, the peers known so far), starts BIRD, the route follower and the status poll. */
  async start(leases: readonly Lease[] = []): Promise<void> {
    for (const lease of leases) this.leases.set(formatCidr(lease.subnet), lease);
    this.writeConfig(this.render());
    rmSync(this.paths.socket, { force: true }); // a socket left by an earlier BIRD would answer nothing
    this.bird.start();
    await this.follower.start();
    // Lease events right after start must reach a BIRD that answers: wait for its socket (not fatal: supervised).
    const deadline = Date.now() + BIRD_ANSWER_TIMEOUT_MS;
    while (Date.now() < deadline) {
      // Only ask birdc once the socket exists: a spawn per 50 ms per starting agent adds up on a busy machine.
      if (this.bird.running && existsSync(this.paths.socket) && (await birdc(this.paths.socket, ['show', 'status'], { birdcPath: this.options.birdcPath }).then(() => true, () => false))) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.schedulePoll(0);
  }

  /** The routes BIRD programmed in the main table (encap none / CrossSubnet's direct half), for status. */
  get directRoutes(): BirdKernelRoute[] {
    return this.follower.current.main;
  }

  applySnapshot(leases: readonly Lease[]): Promise<void> {
    const own = this.leases.get(formatCidr(this.options.lease.subnet))!;
    this.leases.clear();
    this.leases.set(formatCidr(own.subnet), own);
    for (const lease of leases) if (!cidrEquals(lease.subnet, own.subnet)) this.leases.set(formatCidr(lease.subnet), lease);
    return this.reconfigure();
  }

  applyEvents(events: readonly LeaseEvent[]): Promise<void> {
    for (const event of events) {
      if (cidrEquals(event.lease.subnet, this.options.lease.subnet)) continue;
      if (event.type === 'added') this.leases.set(formatCidr(event.lease.subnet), event.lease);
      else this.leases.delete(formatCidr(event.lease.subnet));
    }
    return this.reconfigure();
  }

  private render(): string {
    return renderBirdConfig({
      lease: this.options.lease,
      config: this.options.config,
      leases: [...this.leases.values()],
      underlay: { device: this.options.underlay.name, subnet: this.options.underlay.subnet },
      kernelTable: this.kernelTable,
    });
  }

  /** Atomically: a half-written bird.conf is never what BIRD (or a restart of it) reads. */
  private writeConfig(text: string): void {
    const temporary = `${this.paths.config}.${process.pid}.tmp`;
    writeFileSync(temporary, text);
    renameSync(temporary, this.paths.config);
    this.rendered = text;
  }

  /** Re-renders; when the text changed, writes it and asks BIRD to reconfigure. Serialized; never throws. */
  private reconfigure(): Promise<void> {
    // A burst of lease events (nodes joining together, a snapshot after a reconnect) makes one configure, not one per
    // event: a join would otherwise cost every node one birdc run per event, all at once.
    this.pendingReconfigure ??= new Promise<void>((resolve) => {
      setTimeout(() => {
        this.pendingReconfigure = undefined;
        resolve(this.reconfigureNow());
      }, this.options.settleMs ?? DEFAULT_SETTLE_MS);
    });
    return this.pendingReconfigure;
  }

  private reconfigureNow(): Promise<void> {
    this.configuring = this.configuring.then(async () => {
      if (this.stopped) return;
      let text: string;
      try {
        text = this.render();
      } catch (err) {
        this.options.log.error('cannot render the BIRD config: keeping the last one', { error: (err as Error).message });
        return;
      }
      if (text !== this.rendered) this.writeConfig(text);
      await this.configureBird();
    });
    return this.configuring;
  }

  /** `birdc configure` when BIRD may not run the latest file; a failure is logged once and retried at each poll. */
  private async configureBird(): Promise<void> {
    const text = this.rendered;
    if (text === this.configured || !this.bird.running) return; // a BIRD started later reads the new file itself
    try {
      const answer = await birdConfigure(this.paths.socket, { birdcPath: this.options.birdcPath });
      if (this.configureError !== undefined) this.options.log.info('birdc configure works again');
      this.configureError = undefined;
      this.configured = text;
      this.options.log.info('bird reconfigured', { peers: this.peerCount(text), answer });
    } catch (err) {
      const message = (err as Error).message;
      if (this.configureError === undefined) {
        this.options.log.error('birdc configure failed: BIRD runs on its previous config; retrying every poll', { error: message, config: this.paths.config });
      }
      this.configureError = message;
    }
  }

  private peerCount(text: string): number {
    return (text.match(/^protocol bgp /gm) ?? []).length;
  }

  private applyKernelRoutes(routes: BirdKernelRoutes): void {
    const tables = this.options.tables;
    if (tables === undefined) return;
    const wanted = new Map(routes.ipip.map((r) => [formatCidr(r.subnet), r]));
    for (const [key, route] of this.applied) {
      const next = wanted.get(key);
      if (next !== undefined && next.gateway === route.gateway) continue;
      tables.routes.delete(route.subnet);
      tables.removeVtep(route.gateway, route.subnet);
      this.applied.delete(key);
      this.options.log.info('ipip route removed (withdrawn by BGP)', { subnet: key, via: formatIPv4(route.gateway) });
    }
    for (const [key, route] of wanted) {
      if (this.applied.has(key)) continue;
      tables.routes.set(route.subnet, { subnet: route.subnet, gateway: route.gateway, encap: 'ipip' });
      tables.addVtep(route.gateway, route.subnet);
      this.applied.set(key, route);
      this.options.log.info('ipip route added (learned by BGP)', { subnet: key, via: formatIPv4(route.gateway) });
    }
  }

  private schedulePoll(delayMs = this.options.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS): void {
    if (this.stopped) return;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.poll(), delayMs);
    this.pollTimer.unref();
  }

  private async poll(): Promise<void> {
    try {
      if (this.bird.running) {
        this.protocols = await showProtocols(this.paths.socket, { birdcPath: this.options.birdcPath });
        if (this.pollError !== undefined) this.options.log.info('birdc answers again');
        this.pollError = undefined;
        this.watchSessions();
        if (this.configured !== this.rendered) {
          this.configuring = this.configuring.then(() => (this.stopped ? undefined : this.configureBird()));
          await this.configuring;
        }
      } else {
        this.protocols = [];
      }
    } catch (err) {
      const message = (err as Error).message;
      // BIRD starting or restarting has no socket yet: say it once per failure streak.
      if (this.pollError === undefined && !this.stopped) {
        this.options.log.warn('birdc show protocols failed: BGP status is stale until BIRD answers', { error: message, socket: this.paths.socket });
      }
      this.pollError = message;
    } finally {
      this.schedulePoll();
    }
  }

  /** Logs each session going up or down once, and a session that stays down with BIRD's reason and what to check. */
  private watchSessions(): void {
    const now = Date.now();
    const bgp = this.protocols.filter((p) => p.proto === 'BGP');
    for (const p of bgp) {
      const established = (p.bgpState ?? p.info).startsWith('Established');
      const seen = this.sessions.get(p.name);
      if (seen === undefined) {
        this.sessions.set(p.name, { established, downSince: now, reported: false });
        if (established) this.options.log.info('BGP session established', { peer: p.name, neighbor: p.neighbor ?? '?' });
        continue;
      }
      if (established && !seen.established) {
        this.options.log.info('BGP session established', { peer: p.name, neighbor: p.neighbor ?? '?' });
      } else if (!established && seen.established) {
        seen.downSince = now;
        seen.reported = true;
        this.options.log.warn('BGP session down', { peer: p.name, neighbor: p.neighbor ?? '?', state: p.bgpState ?? p.state, reason: p.lastError ?? 'none given', hint: hintFor(p) });
      } else if (!established && !seen.reported && now - seen.downSince >= DOWN_REPORT_MS) {
        seen.reported = true;
        this.options.log.warn('BGP session not established', {
          peer: p.name, neighbor: p.neighbor ?? '?', state: p.bgpState ?? p.state, reason: p.lastError ?? 'none given', forSeconds: Math.round((now - seen.downSince) / 1000), hint: hintFor(p),
        });
      }
      if (established) seen.reported = false;
      seen.established = established;
    }
    for (const name of [...this.sessions.keys()]) if (!bgp.some((p) => p.name === name)) this.sessions.delete(name);
    const all = bgp.length > 0 && bgp.every((p) => (p.bgpState ?? p.info).startsWith('Established'));
    if (!this.startupDone && (all || bgp.length === 0) && this.peerCount(this.rendered) === bgp.length) {
      this.startupDone = true;
      this.options.log.info('BGP start-up done: every peer established', { peers: bgp.length });
    }
  }

  /** Refreshes the BGP status now instead of at the next poll (for `vxtun status` right after a change). */
  async refreshStatus(): Promise<void> {
    await this.poll();
  }

  status(): BgpStatus {
    const peers: BgpPeerStatus[] = this.protocols
      .filter((p) => p.proto === 'BGP')
      .map((p) => ({
        name: p.name,
        address: p.neighbor,
        state: p.state,
        session: p.bgpState ?? p.info.split(/\s{2,}/)[0] ?? '',
        since: p.since,
        info: p.info,
        ...(p.lastError !== undefined ? { lastError: p.lastError } : {}),
        ...(!(p.bgpState ?? p.info).startsWith('Established') ? { hint: hintFor(p) } : {}),
        ...(p.routes !== undefined ? { routes: p.routes } : {}),
      }));
    const established = peers.filter((p) => p.session === 'Established').length;
    const ready = this.bird.running && (peers.length === 0 || (this.startupDone ? established >= 1 : established === peers.length));
    return {
      as: this.backend.as,
      encap: this.backend.encap,
      routeReflectors: this.backend.routeReflectors.map(formatIPv4),
      gracefulRestart: this.backend.gracefulRestart,
      bfd: this.backend.bfd,
      bird: {
        running: this.bird.running,
        ...(this.bird.pid !== undefined ? { pid: this.bird.pid } : {}),
        restarts: this.bird.restarts,
        config: this.paths.config,
        socket: this.paths.socket,
        ...(this.pollError !== undefined ? { lastError: this.pollError } : {}),
      },
      peers,
      routes: {
        imported: peers.reduce((sum, p) => sum + (p.routes?.imported ?? 0), 0),
        exported: peers.reduce((sum, p) => sum + (p.routes?.exported ?? 0), 0),
      },
      ready,
      startupDone: this.startupDone,
      kernelTable: this.kernelTable,
    };
  }

  /** The config BIRD was last given (for tests and `vxtun status`). */
  readConfig(): string {
    return readFileSync(this.paths.config, 'utf8');
  }

  /**
   * Stops BIRD (its peers get a Cease and withdraw our block at once), the follower and the poll, then deletes the
   * `proto bird` routes BIRD left in the kernel (`persist`), so a stopped agent leaves no stale route behind.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    await this.configuring.catch(() => undefined);
    this.follower.stop();
    await this.bird.stop();
    try {
      const deleted = await flushBirdRoutes(this.options.config.network, this.kernelTable);
      if (deleted > 0) this.options.log.info('deleted the routes bird left in the kernel', { routes: deleted });
    } catch (err) {
      this.options.log.error(`could not delete bird's kernel routes: remove them with \`ip route flush proto bird\` and \`ip route flush table ${this.kernelTable} proto bird\``, {
        error: (err as Error).message,
      });
    }
  }
}

/** What to check for a session that is not Established, from BIRD's state and reason (FACTS.md, what users hit). */
export function hintFor(p: BirdProtocol): string {
  const reason = p.lastError ?? '';
  const state = p.bgpState ?? p.info;
  if (/Connection refused/.test(reason)) return `nothing listens on ${p.neighbor ?? 'the peer'}:179: is its vxtun agent (and bird) running?`;
  if (/Hold timer expired|No route to host|Connection timed out/.test(reason)) return `${p.neighbor ?? 'the peer'} stopped answering: check the node and the underlay path (BFD notices this in under a second)`;
  if (/Administrative shutdown/.test(reason)) return 'the peer stopped its BGP (agent stopped or restarting); it reconnects when it is back';
  if (/Bad peer AS|Unexpected connect/.test(reason)) return 'the peer is configured differently: same AS on every node, and does its store list us? (calico#6047)';
  if (state.startsWith('Passive')) return `waiting for ${p.neighbor ?? 'the peer'} to connect (it has the higher address): is its agent running and does it see our lease?`;
  return 'see `birdc -s <socket> show protocols all` on both nodes';
}
