// Where the CPU goes during a 64-byte UDP flood through two vxtun agents: each agent's and each iperf3's share of a
// core. Run as root: node -r tsx/cjs bench/udp-cpu.ts
import { runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { cpuSeconds } from '../src/lab/proc';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';
import { execFileSync } from 'node:child_process';
(async () => {
  const lab = await createLab({ name: `vxt-c${process.pid}`, nodes: 2 });
  const overlay = await Overlay.create(lab, { backend: 'vxlan' });
  try {
    for (const n of lab.nodes) await overlay.startAgent(n);
    await overlay.waitForRoutes(lab.node(1), 1);
    const target = formatIPv4((await overlay.subnetOf(lab.node(2))).address);
    const agents = [...overlay.agents.values()].map((a) => a.process.pid!);
    const before = agents.map(cpuSeconds);
    const t0 = Date.now();
    const run = runIperf(lab, { server: lab.node(2), client: lab.node(1), address: target, seconds: 4, protocol: 'udp', udpPacketSize: 64 });
    await new Promise((r) => setTimeout(r, 2000));
    const iperfs = execFileSync('pgrep', ['-x', 'iperf3'], { encoding: 'utf8' }).trim().split('\n').map(Number);
    const ib = iperfs.map(cpuSeconds);
    await new Promise((r) => setTimeout(r, 1500));
    const ia = iperfs.map(cpuSeconds);
    const r = await run;
    const secs = (Date.now() - t0) / 1000;
    const after = agents.map(cpuSeconds);
    console.log('kpps', ((r.packetsPerSecond ?? 0) / 1000).toFixed(1), 'lost %', r.lossPercent?.toFixed(1));
    console.log('agent CPU share (sender, receiver):', after.map((a, i) => ((a - before[i]) / secs).toFixed(2)).join(', '));
    console.log('iperf3 CPU share:', ia.map((a, i) => ((a - ib[i]) / 1.5).toFixed(2)).join(', '));
  } finally { await overlay.close(); await lab.destroy(); }
})();
