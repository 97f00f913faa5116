// BirdSupervisor with stand-in "bird" scripts (no root, no BIRD needed): restart with backoff and -R, one log line per
// exit saying what happens next, stop() ends the child (SIGTERM, then SIGKILL after the grace period).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BirdSupervisor } from '../../../src/control/bgp/bird-process';
import type { LogFields, Logger } from '../../../src/control/log';

const test = suite('control/bgp: BIRD supervision');

function collector(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: LogFields) => void lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function script(dir: string, body: string): string {
  const file = join(dir, 'fake-bird');
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a BIRD that keeps dying is restarted with a doubling backoff, with -R when graceful restart is on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-birdsup-'));
  try {
    // Records its arguments, says something on stderr as BIRD does, and exits.
    const bird = script(dir, `echo "$@" >> ${dir}/argv; echo "2026-11-29 22:00:00.000 <ERR> fake failure" >&2; exit 1`);
    const log = collector();
    let spawns = 0;
    const supervisor = new BirdSupervisor({
      paths: { config: join(dir, 'bird.conf'), socket: join(dir, 'bird.ctl'), pidFile: join(dir, 'bird.pid') },
      log, birdPath: bird, gracefulRestart: true, initialBackoffMs: 50, maxBackoffMs: 200, onSpawn: () => void spawns++,
    });
    supervisor.start();
    await sleep(900); // 50 + 100 + 200 + 200 ms of backoff, plus the runs
    await supervisor.stop();
    const runs = readFileSync(join(dir, 'argv'), 'utf8').trim().split('\n');
    assert.ok(runs.length >= 3 && runs.length <= 7, `${runs.length} runs`);
    assert.is(runs[0], `-f -c ${dir}/bird.conf -s ${dir}/bird.ctl -P ${dir}/bird.pid`);
    assert.is(runs[1], `-f -c ${dir}/bird.conf -s ${dir}/bird.ctl -P ${dir}/bird.pid -R`, 'restarts recover gracefully');
    assert.is(supervisor.restarts, runs.length - 1);
    assert.is(spawns, runs.length);
    const exits = log.lines.filter((l) => l.includes('bird exited: restarting it'));
    assert.is(exits.length, runs.length, 'one line per exit');
    assert.match(exits[0]!, /"restartInMs":50/);
    assert.match(exits[1]!, /"restartInMs":100/);
    assert.match(exits[0]!, /bird -p -c/, 'exit code 1: check the config');
    assert.ok(log.lines.some((l) => l.startsWith('error bird {"line":"<ERR> fake failure"}')), 'BIRD\'s own lines are logged');
    await sleep(300);
    assert.is(readFileSync(join(dir, 'argv'), 'utf8').trim().split('\n').length, runs.length, 'no restart after stop()');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stop(): SIGTERM ends a running BIRD; one that ignores it is killed after the grace period', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-birdsup-'));
  try {
    const paths = { config: join(dir, 'bird.conf'), socket: join(dir, 'bird.ctl'), pidFile: join(dir, 'bird.pid') };
    const polite = new BirdSupervisor({ paths, log: collector(), birdPath: script(dir, 'exec sleep 30'), gracefulRestart: false });
    polite.start();
    await sleep(100);
    assert.ok(polite.running);
    const started = Date.now();
    await polite.stop();
    assert.not.ok(polite.running);
    assert.ok(Date.now() - started < 1_000, 'SIGTERM was enough');

    const log = collector();
    const stubborn = new BirdSupervisor({ paths, log, birdPath: script(dir, "trap '' TERM; while :; do sleep 0.05; done"), gracefulRestart: false });
    stubborn.start();
    await sleep(100);
    await stubborn.stop();
    assert.not.ok(stubborn.running);
    assert.ok(log.lines.some((l) => l.includes('bird did not stop within the grace period: killing it')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
