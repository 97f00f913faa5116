// The vxtun command line: the only layer that reads argv, prints for people, and exits.
import { Command, CommanderError } from 'commander';
import { agentCommand } from './commands/agent';
import { demoCommand } from './commands/demo';
import { initCommand } from './commands/init';
import { labCommand } from './commands/lab';
import { statusCommand } from './commands/status';
import { storeCommand } from './commands/store';
import { traceCommand } from './commands/trace';

export function buildProgram(): Command {
  const program = new Command('vxtun')
    .description('user-space VXLAN / IP-in-IP overlay data plane (flannel-compatible store layout)')
    .version(require('../../package.json').version)
    .showHelpAfterError('(run with --help for usage)');
  initCommand(program);
  agentCommand(program);
  storeCommand(program);
  statusCommand(program);
  traceCommand(program);
  labCommand(program);
  demoCommand(program);
  return program;
}

/**
 * When the reader of our output goes away (`vxtun lab ls | head -3`), stop as Ctrl-C would: commands with something
 * to clean up (lab up, demo, agent, trace) handle SIGINT, so run their handlers; the others have nothing to undo and
 * exit 0. Writes after that go nowhere (the stream is destroyed), so cleanup that prints still runs. Any other output
 * error is one line on stderr and exit 1.
 */
export function stopWhenOutputCloses(): void {
  let stopping = false;
  const onError = (stream: 'stdout' | 'stderr') => (error: NodeJS.ErrnoException): void => {
    if (stopping) return;
    stopping = true;
    if (error.code === 'EPIPE') {
      if (process.listenerCount('SIGINT') > 0) process.emit('SIGINT', 'SIGINT');
      else process.exit(0);
      return;
    }
    if (stream === 'stdout') process.stderr.write(`vxtun: cannot write the output: ${error.message}\n`);
    process.exit(1);
  };
  process.stdout.on('error', onError('stdout'));
  process.stderr.on('error', onError('stderr'));
}

export async function main(): Promise<void> {
  stopWhenOutputCloses();
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode); // commander already printed the problem
    process.stderr.write(`vxtun: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main();
