// A throw-away single-member etcd on 127.0.0.1, for tests, the lab and benchmarks.
// It must never outlive us: it dies with its parent (PR_SET_PDEATHSIG through setpriv when available)
// and is killed on process 'exit' as well.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const ETCD = '/usr/bin/etcd';
const ETCDCTL = '/usr/bin/etcdctl';
const SETPRIV = '/usr/bin/setpriv';
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
const LOG_LINES_KEPT = 40;

export interface EtcdServerOptions {
  /** Where etcd keeps its data; a fresh temporary directory (removed on stop) when not given. */
  dataDir?: string;
  /** Client port on 127.0.0.1; a free one when not given. */
  clientPort?: number;
  /** Peer port on 127.0.0.1; a free one when not given. */
  peerPort?: number;
}

export interface EtcdServer {
  /** For openStore(): "etcd://127.0.0.1:PORT". */
  readonly url: string;
  /** "127.0.0.1:PORT", for etcdctl --endpoints. */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
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
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'vxt-etcd-')));
  const clientPort = options.clientPort ?? (await freePort());
  let peerPort = options.peerPort ?? (await freePort());
  while (peerPort === clientPort) peerPort = await freePort();
  const server = new RunningEtcd(dataDir, ownsDataDir, clientPort, peerPort);
  try {
    await server.launch();
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

class RunningEtcd implements EtcdServer {
  readonly url: string;
  readonly endpoint: string;
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
  ) {
    this.endpoint = `127.0.0.1:${clientPort}`;
    this.url = `etcd://${this.endpoint}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async launch(): Promise<void> {
    const peerUrl = `http://127.0.0.1:${this.peerPort}`;
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
    const [command, commandArgs] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', ETCD, ...args]]
      : [ETCD, args];
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    process.on('exit', this.killOnExit);
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
    await promisify(execFile)(ETCDCTL, [`--endpoints=${this.endpoint}`, 'compact', String(revision), '--physical'], {
      env: { ...process.env, ETCDCTL_API: '3' },
      timeout: 10_000,
    });
  }

  recentLog(): string {
    return this.log.join('\n');
  }

  private async terminate(): Promise<void> {
    const child = this.child;
    process.off('exit', this.killOnExit);
    if (!child || !this.exited) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.exited;
      clearTimeout(killer);
    }
    this.child = undefined;
    this.exited = undefined;
  }

  private healthy(): Promise<boolean> {
    return new Promise((resolve) => {
      const request = httpGet({ host: '127.0.0.1', port: this.clientPort, path: '/health', timeout: 1000 }, (response) => {
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
