// A/B of the TUN levers of issue 11 (agent flags --tun-io, --tun-uso) in one lab, variants interleaved round by
// round (A B C D, A B C D, ...) so that drift on this shared machine falls on all of them alike. Per variant and
// round: UDP 64 B and 1400 B packets/s received with the agents' CPU per million packets, TCP single stream, and
// ping p50. The agents restart with the variant's flags between measurements; the lab stays.
//
//   node -r tsx/cjs bench/tun-levers.ts [--rounds 3] [--seconds 5] [--variant name="--flags" ...]   (root; npm run build first)
import { fetchStatus } from '../src/control/status-server';
import { runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { ping, percentile } from '../src/lab/ping';
import { cpuSeconds } from '../src/lab/proc';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';
import { loadavg } from 'node:os';

interface Variant {
  name: string;
  args: string[];
}

const DEFAULT_VARIANTS: Variant[] = [
  { name: 'readv', args: ['--tun-io', 'readv', '--tun-uso', 'off'] },
  { name: 'uring', args: ['--tun-io', 'uring', '--tun-uso', 'off'] },
  { name: 'uso', args: ['--tun-io', 'readv', '--tun-uso', 'on'] },
  { name: 'uring+uso', args: ['--tun-io', 'uring', '--tun-uso', 'on'] },
];

interface Sample {
  variant: string;
  round: number;
  load1: number;
  udp64Pps: number | null;
  udp64AgentCpuPerMpkt: number | null;
  /** CPU microseconds per packet the sending agent read from its TUN, and the receiving agent wrote into its TUN. */
  udp64SendUsPerPkt: number | null;
  udp64RecvUsPerPkt: number | null;
  udp1400Pps: number | null;
  udp1400AgentCpuPerMpkt: number | null;
  tcp1Gbps: number | null;
  tcp1AgentCpuPerGbit: number | null;
  pingP50Us: number | null;
  errors: string[];
}

function parseArgs(argv: string[]): { rounds: number; seconds: number; variants: Variant[]; json?: string } {
  let rounds = 3;
  let seconds = 5;
  let json: string | undefined;
  const variants: Variant[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--rounds') rounds = Number(argv[++i]);
    else if (arg === '--seconds') seconds = Number(argv[++i]);
    else if (arg === '--json') json = argv[++i];
    else if (arg === '--variant') {
      const spec = argv[++i] ?? '';
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new Error(`--variant wants name="--flags", got ${spec}`);
      variants.push({ name: spec.slice(0, eq), args: spec.slice(eq + 1).replace(/^"|"$/g, '').split(/\s+/).filter((s) => s !== '') });
    } else throw new Error(`unknown argument ${arg}`);
  }
  return { rounds, seconds, variants: variants.length > 0 ? variants : DEFAULT_VARIANTS, json };
}

function median(values: Array<number | null>): number | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

async function main(): Promise<void> {
  const { rounds, seconds, variants, json } = parseArgs(process.argv.slice(2));
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const lab = await createLab({ name: `vxt-tl${process.pid % 100000}`, nodes: 2 });
  let overlay: Overlay | undefined;
  const samples: Sample[] = [];
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    const [client, server] = [lab.node(1), lab.node(2)];
    let running = false;
    for (let round = 1; round <= rounds; round++) {
      for (const variant of variants) {
        if (running) {
          await overlay.stopAgent(client);
          await overlay.stopAgent(server);
        }
        const args = ['--no-ip-masq', ...variant.args];
        const handles = [await overlay.startAgent(client, args), await overlay.startAgent(server, args)];
        running = true;
        await overlay.waitForRoutes(client, 1);
        await overlay.waitForRoutes(server, 1);
        const target = formatIPv4((await overlay.subnetOf(server)).address);
        const pids = handles.map((h) => h.process.pid!);
        const cpu = (): number => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
        const sample: Sample = {
          variant: variant.name, round, load1: loadavg()[0], udp64Pps: null, udp64AgentCpuPerMpkt: null, udp1400Pps: null,
          udp1400AgentCpuPerMpkt: null, udp64SendUsPerPkt: null, udp64RecvUsPerPkt: null, tcp1Gbps: null, tcp1AgentCpuPerGbit: null, pingP50Us: null, errors: [],
        };
        const flows = async (): Promise<[number, number]> => {
          const [c, s] = (await Promise.all(handles.map((h) => fetchStatus(h.statusSocket)))) as Array<{ counters: { tunIn: { packets: number }; tunOut: { packets: number } } }>;
          return [c.counters.tunIn.packets, s.counters.tunOut.packets];
        };
        const udp = async (size: number): Promise<[number, number] | null> => {
          try {
            const before = cpu();
            const [sendCpu0, recvCpu0] = [cpuSeconds(pids[0]), cpuSeconds(pids[1])];
            const [tunIn0, tunOut0] = await flows();
            const r = await runIperf(lab, { server, client, address: target, seconds, protocol: 'udp', udpPacketSize: size });
            const pps = r.packetsPerSecond ?? 0;
            const total = cpu() - before;
            const [tunIn1, tunOut1] = await flows();
            if (size === 64) {
              sample.udp64SendUsPerPkt = ((cpuSeconds(pids[0]) - sendCpu0) * 1e6) / Math.max(1, tunIn1 - tunIn0);
              sample.udp64RecvUsPerPkt = ((cpuSeconds(pids[1]) - recvCpu0) * 1e6) / Math.max(1, tunOut1 - tunOut0);
            }
            return [pps, total / ((pps * r.seconds) / 1e6)];
          } catch (error) {
            sample.errors.push(`udp ${size}: ${String(error).split('\n')[0]}`);
            return null;
          }
        };
        const u64 = await udp(64);
        if (u64) [sample.udp64Pps, sample.udp64AgentCpuPerMpkt] = u64;
        const u1400 = await udp(1400);
        if (u1400) [sample.udp1400Pps, sample.udp1400AgentCpuPerMpkt] = u1400;
        try {
          const before = cpu();
          const r = await runIperf(lab, { server, client, address: target, seconds, protocol: 'tcp' });
          sample.tcp1Gbps = r.gbitPerSecond;
          sample.tcp1AgentCpuPerGbit = (cpu() - before) / (r.gbitPerSecond * r.seconds);
        } catch (error) {
          sample.errors.push(`tcp: ${String(error).split('\n')[0]}`);
        }
        try {
          const replies = await ping(lab, client, target, { count: 40, intervalSeconds: 0.05 });
          const sorted = [...replies.rttsMs].sort((a, b) => a - b);
          if (sorted.length > 0) sample.pingP50Us = percentile(sorted, 50) * 1000;
        } catch (error) {
          sample.errors.push(`ping: ${String(error).split('\n')[0]}`);
        }
        samples.push(sample);
        log(`round ${round} ${variant.name.padEnd(10)} load ${sample.load1.toFixed(1)}  udp64 ${sample.udp64Pps?.toFixed(0)} pps (${sample.udp64AgentCpuPerMpkt?.toFixed(2)} agent CPU s/Mpkt)  udp1400 ${sample.udp1400Pps?.toFixed(0)} pps (${sample.udp1400AgentCpuPerMpkt?.toFixed(2)} s/Mpkt)  tcp ${sample.tcp1Gbps?.toFixed(2)} Gbit/s (${sample.tcp1AgentCpuPerGbit?.toFixed(3)} s/Gbit)  ping p50 ${sample.pingP50Us?.toFixed(0)} us  udp64 per packet: sender ${sample.udp64SendUsPerPkt?.toFixed(2)} us, receiver ${sample.udp64RecvUsPerPkt?.toFixed(2)} us CPU ${sample.errors.join('; ')}`);
      }
    }
  } finally {
    await overlay?.close();
    await lab.destroy();
  }
  const base = variants[0].name;
  const table = variants.map((v) => {
    const mine = samples.filter((s) => s.variant === v.name);
    const pick = (f: (s: Sample) => number | null): number | null => median(mine.map(f));
    return {
      variant: v.name,
      udp64Pps: pick((s) => s.udp64Pps), udp64CpuPerMpkt: pick((s) => s.udp64AgentCpuPerMpkt),
      udp1400Pps: pick((s) => s.udp1400Pps), udp1400CpuPerMpkt: pick((s) => s.udp1400AgentCpuPerMpkt),
      sendUs: pick((s) => s.udp64SendUsPerPkt), recvUs: pick((s) => s.udp64RecvUsPerPkt),
      tcp1Gbps: pick((s) => s.tcp1Gbps), tcp1CpuPerGbit: pick((s) => s.tcp1AgentCpuPerGbit), pingP50Us: pick((s) => s.pingP50Us),
    };
  });
  const ref = table[0];
  const ratio = (a: number | null, b: number | null): string => (a !== null && b !== null && b !== 0 ? (a / b).toFixed(2) : '-');
  process.stdout.write(`medians of ${rounds} interleaved rounds, ${seconds} s per iperf3 run; ratios against ${base}\n`);
  process.stdout.write('| variant | udp64 pps | ratio | sender us CPU/pkt | ratio | receiver us CPU/pkt | ratio | udp1400 pps | ratio | tcp Gbit/s | ratio | CPU s/Gbit | ping p50 us |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n');
  for (const r of table) {
    process.stdout.write(`| ${r.variant} | ${r.udp64Pps?.toFixed(0)} | ${ratio(r.udp64Pps, ref.udp64Pps)} | ${r.sendUs?.toFixed(2)} | ${ratio(r.sendUs, ref.sendUs)} | ${r.recvUs?.toFixed(2)} | ${ratio(r.recvUs, ref.recvUs)} | ${r.udp1400Pps?.toFixed(0)} | ${ratio(r.udp1400Pps, ref.udp1400Pps)} | ${r.tcp1Gbps?.toFixed(2)} | ${ratio(r.tcp1Gbps, ref.tcp1Gbps)} | ${r.tcp1CpuPerGbit?.toFixed(3)} | ${r.pingP50Us?.toFixed(0)} |\n`);
  }
  if (json !== undefined) require('node:fs').writeFileSync(json, JSON.stringify({ rounds, seconds, variants, samples, table }, null, 2));
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
