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

export async function main(): Promise<void> {
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
