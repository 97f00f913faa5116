// The agent's BIRD: `bird -f` as a child process with its own config, control socket and pid file (never Debian's
// /etc/bird), restarted with backoff when it dies, stopped with the agent. Stopping it with SIGTERM makes BIRD send
// every peer a Cease (Administrative shutdown), so the peers withdraw our routes at once, graceful restart or not.
// A restart after a crash runs `bird -R` (graceful restart recovery, as calico-node runs it), so the kernel routes
// BIRD left (`persist`) stay until the sessions have converged again.
// Every child event is logged once with what to do; nothing here throws into the agent after start().
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Logger } from '../log';

export interface BirdPaths {
  config: string;
  /** Control socket for birdc (`bird -s`). */
  socket: string;
  /** `bird -P`. */
  pidFile: string;
}

export interface BirdSupervisorOptions {
  paths: BirdPaths;
  log: Logger;
  birdPath?: string;
  /** First restart delay; doubles up to maxBackoffMs, and resets once BIRD has stayed up for STABLE_MS. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Graceful restart is configured: restarts use `bird -R`. */
  gracefulRestart: boolean;
  /** Called each time a BIRD process is started (first start and restarts). */
  onSpawn?: () => void;
}

const DEFAULT_INITIAL_BACKOFF_MS = 500;
const DEFAULT_MAX_BACKOFF_MS = 30_000;
const STABLE_MS = 30_000;
const STOP_GRACE_MS = 3_000;

export class BirdSupervisor {
  private child?: ChildProcess;
  private stopping = false;
  private restartTimer?: NodeJS.Timeout;
  private backoffMs: number;
  private startedAt = 0;
  /** How many times BIRD was started again after dying. */
  restarts = 0;
  /** Resolves when the child of the moment has exited. */
  private exited?: Promise<void>;

  constructor(private readonly options: BirdSupervisorOptions) {
    this.backoffMs = options.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child?.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts BIRD. A BIRD left by a crashed agent with our pid file and config is stopped first. */
  start(): void {
    this.stopping = false;
    this.stopLeftover();
    this.spawn(false);
  }

  private spawn(recovering: boolean): void {
    const { paths, log } = this.options;
    // setpriv --pdeathsig: BIRD dies with the agent even when the agent is SIGKILLed, leaving no orphan on our socket.
    const args = ['--pdeathsig', 'TERM', this.options.birdPath ?? 'bird', '-f', '-c', paths.config, '-s', paths.socket, '-P', paths.pidFile];
    if (recovering) args.push('-R');
    const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = Date.now();
    this.options.onSpawn?.();
    // 'exit', not 'close': a grandchild holding BIRD's stdout must not delay a restart or stop(). A process that could
    // not be started at all emits 'error' and no 'exit': handled the same way, once.
    let markExited: () => void = () => undefined;
    this.exited = new Promise((resolve) => { markExited = resolve; });
    let gone = false;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        // BIRD's own lines: "<timestamp> <INFO> Mesh_192_0_2_12: Received: Administrative shutdown".
        const level = /<(ERR|FATAL|BUG)>/.test(line) && !/Shutdown completed/.test(line) ? 'error' : /<(WARN|RMT|AUTH)>/.test(line) ? 'warn' : 'info';
        log[level]('bird', { line: line.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? /, '') });
      });
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      log.error(
        err.code === 'ENOENT'
          ? 'cannot start bird: setpriv or bird is missing (apt-get install bird2 util-linux); retrying with backoff'
          : 'cannot start bird; retrying with backoff',
        { error: err.message },
      );
      if (child.pid === undefined) onExit(null, null);
    });
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (gone) return;
      gone = true;
      markExited();
      if (this.child !== child) return;
      this.child = undefined;
      if (this.stopping) return;
      const upMs = Date.now() - this.startedAt;
      if (upMs >= STABLE_MS) this.backoffMs = this.options.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS;
      log.error('bird exited: restarting it; routes it programmed stay in the kernel meanwhile (persist)', {
        ...(code !== null ? { code } : {}),
        ...(signal !== null ? { signal } : {}),
        upSeconds: Math.round(upMs / 100) / 10,
        restartInMs: this.backoffMs,
        ...(code === 1 ? { hint: `check the config with: bird -p -c ${this.options.paths.config}` } : {}),
      });
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.stopping) return;
        this.restarts++;
        this.spawn(this.options.gracefulRestart);
      }, this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS);
    };
    child.once('exit', onExit);
  }

  /** SIGTERM (BIRD tells its peers: Administrative shutdown), SIGKILL after a grace period. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (child === undefined || !this.running) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited!.then(() => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), STOP_GRACE_MS); }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.options.log.warn('bird did not stop within the grace period: killing it', { graceMs: STOP_GRACE_MS });
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** A crashed agent's BIRD still running on our pid file and config: ours to stop before starting another. */
  private stopLeftover(): void {
    const { paths, log } = this.options;
    if (!existsSync(paths.pidFile)) return;
    try {
      const pid = Number(readFileSync(paths.pidFile, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1) return;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!cmdline.some((arg) => /(^|\/)bird$/.test(arg)) || !cmdline.includes(paths.config)) return;
      log.warn('stopping a bird left running by an earlier agent on our config', { pid });
      process.kill(pid, 'SIGTERM');
    } catch {
      // no such process: a stale pid file
    }
  }
}
