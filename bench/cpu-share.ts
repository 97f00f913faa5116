// Where the CPU goes while two vxtun agents forward one iperf3 flow (TCP, or 64-byte UDP): each agent's and each
// iperf3's share of a core, and how busy the whole machine is. If the machine is already busy, more forwarding
// threads (multi-queue TUN) have no idle core to run on. Run as root:
//   node -r tsx/cjs bench/cpu-share.ts [tcp|udp64]
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { cpuSeconds, machineBusyShare, machineJiffies } from '../src/lab/proc';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';

async function main(): Promise<void> {
  const mode = process.argv[2] === 'udp64' ? 'udp64' : 'tcp';
  const lab = await createLab({ name: `vxt-cpu${process.pid}`, nodes: 2 });
  const overlay = await Overlay.create(lab, { backend: 'vxlan' });
  try {
    for (const node of lab.nodes) await overlay.startAgent(node, ['--no-ip-masq']); // node to node: no nat table, no conntrack
    await overlay.waitForRoutes(lab.node(1), 1);
    const target = formatIPv4((await overlay.subnetOf(lab.node(2))).address);
    const agents = [...overlay.agents.values()].map((a) => a.process.pid!);
    const run = runIperf(lab, {
      server: lab.node(2), client: lab.node(1), address: target, seconds: 5,
      ...(mode === 'udp64' ? { protocol: 'udp' as const, udpPacketSize: 64 } : {}),
    });
    await new Promise((resolve) => setTimeout(resolve, 1500)); // past the start, inside the steady state
    const iperfs = execFileSync('pgrep', ['-x', 'iperf3'], { encoding: 'utf8' }).trim().split('\n').map(Number);
    const pids = [...agents, ...iperfs];
    const before = pids.map(cpuSeconds);
    const machineBefore = machineJiffies();
    const windowMs = 2000;
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const shares = pids.map((pid, i) => (cpuSeconds(pid) - before[i]) / (windowMs / 1000));
    const machineAfter = machineJiffies();
    const result = await run;
    const busy = machineBusyShare(machineBefore, machineAfter) ?? 0;
    const figure = mode === 'udp64' ? `${((result.packetsPerSecond ?? 0) / 1000).toFixed(0)} kpps received` : `${result.gbitPerSecond.toFixed(2)} Gbit/s`;
    process.stdout.write(`${mode}: ${figure}\n`);
    process.stdout.write(`  machine busy ${(busy * 100).toFixed(0)}% of ${cpus().length} cores (softirq and kernel threads included)\n`);
    process.stdout.write(`  agent n1 (sender side) ${shares[0].toFixed(2)}, agent n2 ${shares[1].toFixed(2)} cores\n`);
    process.stdout.write(`  iperf3 processes ${shares.slice(2).map((s) => s.toFixed(2)).join(', ')} cores\n`);
  } finally {
    await overlay.close();
    await lab.destroy();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`cpu-share failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
