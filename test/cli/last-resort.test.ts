// The agent process's last resort, in a child process: an exception nobody caught, or a rejection nobody handled,
// is one log line, then the normal stop with exit code 1 (never a stack trace and an abrupt exit).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const test = suite('cli: agent last resort');
const ROOT = join(__dirname, '..', '..');

function runChild(fault: string): { status: number | null; stderr: string } {
  const script = `
    const { installLastResort } = require('./src/cli/commands/agent');
    const { consoleLogger } = require('./src/control/log');
    let stopping = false;
    installLastResort(consoleLogger('info'), () => stopping, (code) => {
      stopping = true;
      process.stderr.write('shutdown ' + code + '\\n');
      setTimeout(() => process.exit(code), 10);
    });
    setInterval(() => {}, 1000);
    ${fault}
  `;
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

test('an exception thrown in a timer: one line, the normal stop, exit 1', () => {
  const r = runChild(`setTimeout(() => { throw new Error('boom in a timer'); }, 10);`);
  assert.is(r.status, 1, r.stderr);
  assert.is(r.stderr, 'level=error msg="internal error: the agent stops (please report this)" error="boom in a timer"\nshutdown 1\n');
});

test('a rejection nobody handles: one line, the normal stop, exit 1; a second fault during the stop exits at once', () => {
  const r = runChild(`Promise.reject(new Error('lost promise')); setTimeout(() => { throw new Error('again'); }, 1);`);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /^level=error msg="internal error: the agent stops \(please report this\)" error="lost promise"\nshutdown 1\n/);
  assert.not.match(r.stderr, /^\s+at /m, 'no stack trace');
});

test.run();
