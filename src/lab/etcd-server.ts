// A throw-away etcd, for tests, the lab and benchmarks: a single member (startEtcd) or an N-member cluster
// (startEtcdCluster), on 127.0.0.1 by default, or inside a network namespace on an address of that namespace (the
// lab's hub, or one lab node per member: control nodes on the underlay, as in a real cluster).
// It must never outlive us: it dies with its parent (PR_SET_PDEATHSIG through setpriv when available)
// and is killed on process 'exit' as well; only a `detached` one (for `vxtun lab up`) outlives us, and then it lives
// in a lab namespace, so that removing the lab kills it.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { commandArgv } from './shell';

const ETCD = '/usr/bin/etcd';
const ETCDCTL = '/usr/bin/etcdctl';
const SETPRIV = '/usr/bin/setpriv';
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
const LOG_LINES_KEPT = 40;
// Inside a namespace the ports are ours alone: etcd's well-known ones, as a cluster's control node would use.
const NAMESPACE_CLIENT_PORT = 2379;
const NAMESPACE_PEER_PORT = 2380;

export interface EtcdServerOptions {
  /** Where etcd keeps its data; a fresh temporary directory (removed on stop) when not given. */
  dataDir?: string;
  /** Client port on HOST; a free one when not given (2379 inside a namespace). */
  clientPort?: number;
  /** Peer port on HOST; a free one when not given (2380 inside a namespace). */
  peerPort?: number;
  /**
   * Run etcd inside this network namespace (`ip netns exec NS etcd ...`). Our own process cannot reach it there:
   * health checks and compaction then run etcdctl in the namespace too.
   */
  netns?: string;
  /** The address etcd listens on (clients and peers); default 127.0.0.1. Must exist in `netns` when one is given. */
  host?: string;
  /**
   * Outlive this process (`vxtun lab up`): no parent-death signal, no exit hook, its own session, output appended to
   * `logFile`. Only sensible with `netns`: whoever removes the namespace kills it.
   */
  detached?: boolean;
  /** With `detached`: where etcd's output goes (default: etcd.log in the data dir). */
  logFile?: string;
  /**
   * How often etcd sends progress notifications to watches that asked for them (etcd's
   * --experimental-watch-progress-notify-interval; etcd's default is 10 minutes). Tests shorten it.
   */
  progressNotifyIntervalMs?: number;
  /** Member name; default "vxt-etcd". */
  name?: string;
  /**
   * Member of a cluster: every member's "NAME=http://HOST:PEERPORT", comma-separated (etcd's --initial-cluster).
   * Default: this member alone. startEtcdCluster() fills it in.
   */
  initialCluster?: string;
  /** A new cluster's token (etcd's --initial-cluster-token), so that members of two test clusters never mix. */
  initialClusterToken?: string;
}

export interface EtcdServer {
  /** For openStore(): "etcd://HOST:PORT" (reachable only from inside `netns` when there is one). */
  readonly url: string;
  /** "HOST:PORT", for etcdctl --endpoints. */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  /** The namespace it runs in, if any. */
  readonly netns: string | undefined;
  /** The etcd process id while it runs. */
  readonly pid: number | undefined;
  /** SIGTERM, then SIGKILL after a grace period; waits for the exit. Removes a temporary data dir unless keepData. */
  stop(options?: { keepData?: boolean }): Promise<void>;
  /** Stops etcd and starts it again on the same ports with the same data (an outage, for tests). */
  restart(options?: { downForMs?: number }): Promise<void>;
  /** Compacts history up to `revision`: watches from older revisions must resync. */
  compact(revision: number): Promise<void>;
  /** The last lines etcd logged, for error messages. */
  recentLog(): string;
  /** SIGKILLs etcd (a crash: no goodbye to clients or peers) and waits for the exit; keeps the data for restart(). */
  kill(): Promise<void>;
}

export async function startEtcd(options: EtcdServerOptions = {}): Promise<EtcdServer> {
  if (!existsSync(ETCD)) {
    throw new Error(`${ETCD} is missing: install it with "apt-get install etcd-server" (scripts/ensure-tools.sh does)`);
  }
  if (options.detached && options.netns === undefined) throw new Error('a detached etcd must run in a lab namespace (netns)');
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'vxt-etcd-')));
  const inNamespace = options.netns !== undefined;
  const clientPort = options.clientPort ?? (inNamespace ? NAMESPACE_CLIENT_PORT : await freePort());
  let peerPort = options.peerPort ?? (inNamespace ? NAMESPACE_PEER_PORT : await freePort());
  while (peerPort === clientPort) peerPort = await freePort();
  const host = options.host ?? '127.0.0.1';
  const name = options.name ?? 'vxt-etcd';
  if (options.progressNotifyIntervalMs !== undefined && !(Number.isInteger(options.progressNotifyIntervalMs) && options.progressNotifyIntervalMs > 0)) {
    throw new Error(`progressNotifyIntervalMs must be a positive integer, got ${options.progressNotifyIntervalMs}`);
  }
  const placement: Placement = {
    host,
    netns: options.netns,
    detached: options.detached ?? false,
    logFile: options.logFile ?? join(dataDir, 'etcd.log'),
    name,
    initialCluster: options.initialCluster ?? `${name}=http://${host}:${peerPort}`,
    initialClusterToken: options.initialClusterToken,
    progressNotifyIntervalMs: options.progressNotifyIntervalMs,
  };
  const server = new RunningEtcd(dataDir, ownsDataDir, clientPort, peerPort, placement);
  try {
    await server.launch();
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

export interface EtcdMemberPlacement {
  /** The namespace the member runs in (its ports are then etcd's well-known 2379 and 2380 unless given). */
  netns?: string;
  /** Its address; default 127.0.0.1 (members then need distinct ports: free ones are picked). */
  host?: string;
  clientPort?: number;
  peerPort?: number;
}

export interface EtcdClusterOptions {
  /** One entry per member (3 for a cluster that survives the loss of one). */
  members: readonly EtcdMemberPlacement[];
  /** Member names are `${name}-1`, `${name}-2`...; also the cluster token. Default "vxt-etcd". */
  name?: string;
  progressNotifyIntervalMs?: number;
}

export interface EtcdCluster {
  readonly members: readonly EtcdServer[];
  /** "etcd://HOST:PORT,HOST:PORT,..." for openStore(), every member's client endpoint in member order. */
  readonly url: string;
  readonly endpoints: readonly string[];
  /**
   * The index (0-based) of the member that leads now, asked of the live members with `etcdctl endpoint status -w json`
   * (from inside `netns` when given: the members' addresses may be reachable only there). Throws when none answers.
   */
  leader(netns?: string): Promise<number>;
  /** Stops every member and removes their temporary data. */
  stop(): Promise<void>;
}

/**
 * Starts an N-member etcd cluster: every member at once (a member of a new cluster is healthy only when a quorum
 * is up), each with the whole --initial-cluster, as etcd's clustering guide describes for static bootstrapping.
 */
export async function startEtcdCluster(options: EtcdClusterOptions): Promise<EtcdCluster> {
  const name = options.name ?? 'vxt-etcd';
  const placed = [];
  for (const [i, member] of options.members.entries()) {
    const inNamespace = member.netns !== undefined;
    const clientPort = member.clientPort ?? (inNamespace ? NAMESPACE_CLIENT_PORT : await freePort());
    let peerPort = member.peerPort ?? (inNamespace ? NAMESPACE_PEER_PORT : await freePort());
    while (peerPort === clientPort) peerPort = await freePort();
    placed.push({ ...member, host: member.host ?? '127.0.0.1', clientPort, peerPort, name: `${name}-${i + 1}` });
  }
  const initialCluster = placed.map((m) => `${m.name}=http://${m.host}:${m.peerPort}`).join(',');
  // One token for all members (it goes into the cluster ID): members with different tokens refuse each other.
  const initialClusterToken = `${name}-${process.pid}-${Date.now()}`;
  const started = await Promise.allSettled(
    placed.map((m) =>
      startEtcd({
        netns: m.netns,
        host: m.host,
        clientPort: m.clientPort,
        peerPort: m.peerPort,
        name: m.name,
        initialCluster,
        initialClusterToken,
        progressNotifyIntervalMs: options.progressNotifyIntervalMs,
      }),
    ),
  );
  const members = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(members.map((m) => m.stop()));
    throw failed.reason;
  }
  const endpoints = members.map((m) => m.endpoint);
  return {
    members,
    endpoints,
    url: `etcd://${endpoints.join(',')}`,
    async leader(netns?: string): Promise<number> {
      const [file, argv] = commandArgv(ETCDCTL, [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'status', '-w', 'json'], netns);
      // Exits non-zero when a member is down, after printing what the live ones said.
      const stdout = await promisify(execFile)(file, argv, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 10_000 }).then(
        (r) => r.stdout,
        (error: { stdout?: string }) => error.stdout ?? '',
      );
      let statuses: Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
      try {
        statuses = JSON.parse(stdout || '[]');
      } catch {
        statuses = [];
      }
      for (const status of statuses) {
        if (String(status.Status.header.member_id) === String(status.Status.leader)) {
          const index = endpoints.indexOf(status.Endpoint);
          if (index >= 0) return index;
        }
      }
      throw new Error(`no live etcd member says it leads (etcdctl endpoint status: ${stdout.trim() || 'no answer'})`);
    },
    async stop(): Promise<void> {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
}

interface Placement {
  host: string;
  netns: string | undefined;
  detached: boolean;
  logFile: string;
  name: string;
  initialCluster: string;
  initialClusterToken: string | undefined;
  progressNotifyIntervalMs: number | undefined;
}

class RunningEtcd implements EtcdServer {
  readonly url: string;
  readonly endpoint: string;
  readonly netns: string | undefined;
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private log: string[] = [];
  private readonly killOnExit = () => {
    this.child?.kill('SIGKILL');
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  };

  constructor(
    readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly placement: Placement,
  ) {
    this.endpoint = `${placement.host}:${clientPort}`;
    this.url = `etcd://${this.endpoint}`;
    this.netns = placement.netns;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async launch(): Promise<void> {
    const peerUrl = `http://${this.placement.host}:${this.peerPort}`;
    const clientUrl = `http://${this.endpoint}`;
    const { name, initialCluster, initialClusterToken, progressNotifyIntervalMs } = this.placement;
    const args = [
      '--name', name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initialCluster,
      // Read only on the first start; a restarted member goes on from its data dir.
      '--initial-cluster-state', 'new',
      ...(initialClusterToken !== undefined ? ['--initial-cluster-token', initialClusterToken] : []),
      // A quicker election: a single member becomes leader in well under a second, a cluster's in about one.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      ...(progressNotifyIntervalMs !== undefined ? ['--experimental-watch-progress-notify-interval', `${progressNotifyIntervalMs}ms`] : []),
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    const { detached, netns, logFile } = this.placement;
    // `ip netns exec` execs in place: the pid we get is setpriv's, then etcd's, and our signals reach etcd.
    const dieWithUs = existsSync(SETPRIV) && !detached;
    const [command, commandArgs] = dieWithUs
      ? commandArgv(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', ETCD, ...args], netns)
      : commandArgv(ETCD, args, netns);
    let child: ChildProcess;
    if (detached) {
      const logFd = openSync(logFile, 'a');
      try {
        child = spawn(command, commandArgs, { stdio: ['ignore', logFd, logFd], detached: true });
      } finally {
        closeSync(logFd);
      }
      child.unref();
    } else {
      child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
      process.on('exit', this.killOnExit);
    }
    this.child = child;
    const remember = (chunk: Buffer) => {
      this.log.push(...chunk.toString().split('\n').filter((line) => line.length > 0));
      if (this.log.length > LOG_LINES_KEPT) this.log = this.log.slice(-LOG_LINES_KEPT);
    };
    child.stdout?.on('data', remember);
    child.stderr?.on('data', remember);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let exitedEarly = false;
    void this.exited.then(() => (exitedEarly = true));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await this.healthy())) {
      if (exitedEarly) throw new Error(`etcd exited while starting (code ${child.exitCode}):\n${this.recentLog()}`);
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy within ${START_TIMEOUT_MS} ms:\n${this.recentLog()}`);
      await sleep(50);
    }
  }

  async stop(options: { keepData?: boolean } = {}): Promise<void> {
    await this.terminate();
    if (this.ownsDataDir && !options.keepData) await rm(this.dataDir, { recursive: true, force: true });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await this.terminate();
  }

  async restart(options: { downForMs?: number } = {}): Promise<void> {
    await this.terminate();
    if (options.downForMs) await sleep(options.downForMs);
    await this.launch();
  }

  async compact(revision: number): Promise<void> {
    await this.etcdctl(['compact', String(revision), '--physical'], 10_000);
  }

  /** etcdctl against this server, from inside its namespace when it has one. */
  private async etcdctl(args: readonly string[], timeoutMs: number): Promise<string> {
    const [file, argv] = commandArgv(ETCDCTL, [`--endpoints=${this.endpoint}`, ...args], this.placement.netns);
    const { stdout } = await promisify(execFile)(file, argv, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: timeoutMs });
    return stdout;
  }

  /** A detached etcd logs to a file, not to us. */
  private logTail(): string {
    try {
      return readFileSync(this.placement.logFile, 'utf8').split('\n').slice(-LOG_LINES_KEPT).join('\n');
    } catch {
      return '';
    }
  }

  recentLog(): string {
    return this.placement.detached ? this.logTail() : this.log.join('\n');
  }

  private async terminate(): Promise<void> {
    const child = this.child;
    process.off('exit', this.killOnExit);
    if (!child || !this.exited) return;
    child.ref(); // a detached etcd is unref'd: stay alive until it has exited
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.exited;
      clearTimeout(killer);
    }
    this.child = undefined;
    this.exited = undefined;
  }

  private async healthy(): Promise<boolean> {
    if (this.placement.netns !== undefined) {
      // We cannot open the namespace's address ourselves: ask etcdctl, run in there.
      return this.etcdctl(['--dial-timeout=1s', '--command-timeout=1s', 'endpoint', 'health'], 3_000).then(() => true, () => false);
    }
    return new Promise((resolve) => {
      const request = httpGet({ host: this.placement.host, port: this.clientPort, path: '/health', timeout: 1000 }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk));
        response.on('end', () => resolve(response.statusCode === 200 && /"health":\s*"true"/.test(body)));
        response.on('error', () => resolve(false));
      });
      request.on('timeout', () => request.destroy());
      request.on('error', () => resolve(false));
    });
  }
}

/** A port nobody listens on right now (the kernel's pick for port 0). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not find a free port'))));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
