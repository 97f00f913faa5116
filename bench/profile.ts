// Where a forwarding agent spends its time under one TCP stream: n1's agent runs under `node --cpu-prof` while
// iperf3 sends from n1 to n2 through it; prints self time by function, idle included. Run as root:
//   node -r tsx/cjs bench/profile.ts [--no-offload] [--seconds 5]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function selfTimes(file: string): [string, number][] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const times = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const name = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber}`;
    times.set(name, (times.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...times].sort((a, b) => b[1] - a[1]);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = argv.includes('--seconds') ? Number(argv[argv.indexOf('--seconds') + 1]) : 5;
  // Node to node, no pods: no masquerade rules (and no conntrack from their nat table) in the profile.
  const agentArgs = ['--no-ip-masq', ...(argv.includes('--no-offload') ? ['--no-offload'] : [])];
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-profile-'));
  const lab = await createLab({ name: `vxt-prof${process.pid}`, nodes: 2 });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    const [n1, n2] = lab.nodes;
    await overlay.startAgent(n1, agentArgs, n1.underlayIp, ['--cpu-prof', '--cpu-prof-dir', dir]);
    await overlay.startAgent(n2, agentArgs);
    await overlay.waitForRoutes(n1, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    const tcp = await runIperf(lab, { server: n2, client: n1, address: target, seconds });
    await overlay.stopAgent(n1); // SIGTERM: the agent exits cleanly and node writes the profile
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error('the agent wrote no profile');
    const times = selfTimes(join(dir, file));
    const total = times.reduce((sum, [, t]) => sum + t, 0);
    process.stdout.write(`iperf3 TCP n1 -> n2 ${tcp.gbitPerSecond.toFixed(2)} Gbit/s for ${seconds} s${agentArgs.length ? ' (--no-offload)' : ''}; n1's agent, self time:\n`);
    for (const [name, t] of times.slice(0, 15)) process.stdout.write(`${((t / total) * 100).toFixed(1).padStart(6)}%  ${name}\n`);
  } finally {
    await overlay?.close();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`profile failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
