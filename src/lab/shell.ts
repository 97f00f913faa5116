// Running commands for the lab: inside a network namespace or not, bounded in time, failing loudly.
// Every error names the full command line and carries its stderr, because a lab failure is read in a CI log.

import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec NS ...`). */
  netns?: string;
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
// iperf3 -J and `ip -j` output can be large; execFile's 1 MB default would cut them off.
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** A command that exited non-zero, was killed, or could not start. */
export class CommandError extends Error {
  constructor(
    readonly commandLine: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stdout: string,
    readonly stderr: string,
    readonly timedOut: boolean,
    cause?: unknown,
  ) {
    const how = timedOut
      ? 'timed out'
      : signal !== null
        ? `was killed by ${signal}`
        : exitCode !== null
          ? `exited with code ${exitCode}`
          : 'could not be started';
    // A command that never started has no stderr: say why it did not start (ENOENT, EACCES...).
    const notStarted = !timedOut && signal === null && exitCode === null && cause instanceof Error ? cause.message : '';
    const detail = stderr.trim() || notStarted;
    super(`command ${how}: ${commandLine}${detail ? `\n${detail}` : ''}`);
    this.name = 'CommandError';
  }
}

/** The argv actually executed: `cmd args` or `ip netns exec NS cmd args`. */
export function commandArgv(cmd: string, args: readonly string[], netns?: string): [string, string[]] {
  return netns === undefined ? [cmd, [...args]] : ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

/** Quotes an argv for messages so that it can be pasted into a shell. */
export function formatCommandLine(file: string, args: readonly string[]): string {
  return [file, ...args].map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = commandArgv(cmd, args, options.netns);
  const commandLine = formatCommandLine(file, argv);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      { timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr });
          return;
        }
        // execFile's error: `code` is the exit code (number) or a spawn errno (string); `killed` marks the timeout.
        const failure = error as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null };
        const exitCode = typeof failure.code === 'number' ? failure.code : null;
        const timedOut = failure.killed === true && failure.signal === 'SIGKILL';
        reject(new CommandError(commandLine, exitCode, failure.signal ?? null, stdout, stderr, timedOut, error));
      },
    );
    // Without input, close stdin at once so that commands which read it do not wait forever.
    child.stdin?.on('error', () => undefined); // EPIPE when the command exits without reading
    child.stdin?.end(options.input);
  });
}

export interface SpawnOptions {
  /** Append stdout and stderr to this file (the usual choice for agents: readable after a failure). */
  logFile?: string;
  /** When no logFile: 'pipe' to read output, 'ignore' to drop it, 'inherit' to share ours. Default 'pipe'. */
  stdio?: 'pipe' | 'ignore' | 'inherit';
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Starts a long-running command inside `netns` (or in the root namespace when undefined). `ip netns exec` execs the
 * command in place, so the returned ChildProcess's pid is the command itself and signals reach it directly.
 */
export function spawnIn(netns: string | undefined, cmd: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, argv] = commandArgv(cmd, args, netns);
  let stdio: StdioOptions = options.stdio ?? 'pipe';
  let logFd: number | undefined;
  if (options.logFile !== undefined) {
    logFd = openSync(options.logFile, 'a');
    stdio = ['ignore', logFd, logFd];
  }
  try {
    return spawn(file, argv, { stdio, env: options.env, cwd: options.cwd });
  } finally {
    // The child holds its own copy of the descriptor.
    if (logFd !== undefined) closeSync(logFd);
  }
}
