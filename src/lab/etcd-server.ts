// A throw-away single-member etcd, for tests, the lab and benchmarks: on 127.0.0.1 by default, or inside a network
// namespace on an address of that namespace (the lab's hub: a control node on the underlay, as in a real cluster).
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
  const placement: Placement = {
    host: options.host ?? '127.0.0.1',
    netns: options.netns,
    detached: options.detached ?? false,
    logFile: options.logFile ?? join(dataDir, 'etcd.log'),
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

interface Placement {
  host: string;
  netns: string | undefined;
  detached: boolean;
  logFile: string;
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
    const args = [
      '--name', 'vxt-etcd',
      '--data-dir', this.dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `vxt-etcd=${peerUrl}`,
      '--initial-cluster-state', 'new',
      // A quicker election: a single member becomes leader in well under a second.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
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
