// The interleaved e2e bench (bench/e2e.ts) on real namespaces, iperf3, kernel VXLAN devices and vxtun agents, kept
// tiny (2 rounds of 1 s): the rounds interleave the paths figure by figure, every iperf3 run carries machine CPU
// figures, the mixed path moves TCP both ways, a variant's agents get its flags, and every lab is gone afterwards.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runE2e } from '../../bench/e2e';
import type { PathSpec } from '../../bench/options';
import { listNamespaces } from '../../src/lab/topology';

const Bench = suite('bench: interleaved e2e rounds');

/** Pids of processes in network namespace `netns` whose command line holds every one of `words`. */
function processesIn(netns: string, words: string[]): number[] {
  const inode = statSync(`/run/netns/${netns}`).ino;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) !== `net:[${inode}]`) continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (words.every((w) => argv.includes(w))) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

Bench('two rounds over kernel-vxlan, a vxtun-vxlan variant and mixed: order, CPU figures, both directions, cleanup', async () => {
  const paths: PathSpec[] = [
    { name: 'kernel-vxlan', base: 'kernel-vxlan', agentArgs: [] },
    { name: 'vxtun-vxlan+plain', base: 'vxtun-vxlan', agentArgs: ['--no-offload'] },
    { name: 'mixed', base: 'mixed', agentArgs: [] },
  ];
  const order: string[] = [];
  let variantAgents: number[] | undefined;
  const result = await runE2e({
    rounds: 2, seconds: 1, paths, figures: ['tcp1', 'tcp1r', 'udp64', 'ping'], figuresGiven: false, floodSeconds: 0, pingCount: 5, pingIntervalSeconds: 0.02,
    log: (line) => {
      const m = /^round (\d)\/2 (\S+) (\S+):/.exec(line);
      if (m) order.push(`${m[1]} ${m[2]} ${m[3]}`);
      // While the labs exist: the variant's agents run with its extra flag (lab vxt-b<pid>-vv<index>, index 1).
      variantAgents ??= m ? [1, 2].flatMap((n) => processesIn(`vxt-b${process.pid}-vv1-n${n}`, ['agent', '--no-offload'])) : undefined;
    },
  });
  assert.equal(order, [
    '1 tcp1 kernel-vxlan', '1 tcp1 vxtun-vxlan+plain', '1 tcp1 mixed', '1 tcp1r mixed',
    '1 udp64 kernel-vxlan', '1 udp64 vxtun-vxlan+plain', '1 udp64 mixed', '1 ping kernel-vxlan', '1 ping vxtun-vxlan+plain', '1 ping mixed',
    '2 tcp1 kernel-vxlan', '2 tcp1 vxtun-vxlan+plain', '2 tcp1 mixed', '2 tcp1r mixed',
    '2 udp64 kernel-vxlan', '2 udp64 vxtun-vxlan+plain', '2 udp64 mixed', '2 ping kernel-vxlan', '2 ping vxtun-vxlan+plain', '2 ping mixed',
  ], 'each round runs every figure on every path in the fixed order; the reverse direction only on mixed');
  assert.is(variantAgents?.length, 2, 'both agents of the variant run with --no-offload');
  for (const path of result.paths) {
    assert.is(path.error, null, `${path.path} set up`);
    for (const figure of Object.values(path.figures)) {
      assert.equal(figure!.samples.map((s) => s.round), [1, 2], `${path.path} ${figure!.figure}: one sample per round`);
      for (const s of figure!.samples) {
        const what = `${path.path} ${figure!.figure} round ${s.round}`;
        assert.ok(s.value !== null && s.value > 0, `${what}: ${s.error}`);
        if (figure!.figure === 'ping') continue;
        assert.ok(s.machineCpuSeconds! > 0 && s.carried! > 0, `${what}: machine CPU ${s.machineCpuSeconds} s over ${s.carried} units`);
        assert.ok(Math.abs(s.cpuPerUnit! - s.machineCpuSeconds! / s.carried!) < 1e-9, what);
        assert.ok(s.backgroundBusy! >= 0 && s.backgroundBusy! <= 1, what);
        assert.is(s.agentCpuSeconds === null, path.base === 'kernel-vxlan', `${what}: agent CPU only where agents run`);
      }
      assert.ok(figure!.median! > 0, `${path.path} ${figure!.figure} median`);
    }
  }
  const mixed = result.paths.find((p) => p.path === 'mixed')!;
  assert.ok(mixed.figures.tcp1!.median! > 0.01 && mixed.figures.tcp1r!.median! > 0.01, 'mixed: TCP moves both ways (Gbit/s)');
  assert.is(result.paths[0]!.figures.tcp1r, undefined);
  assert.ok(result.loadAverageStart.length === 3 && result.durationSeconds > 0);
  const left = (await listNamespaces()).filter((ns) => ns.startsWith(`vxt-b${process.pid}-`));
  assert.equal(left, [], 'every lab removed');
});

Bench.run();
