// Issue 8, data plane: the agent never dies from what it receives, and nothing gets in. Real agents in namespaces:
// its TUN deleted under it, its TUN MTU raised by hand, forged VXLAN and IP-in-IP packets from a rogue namespace and
// from a leased node, and a flood of malformed datagrams while good traffic flows.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { runIperf } from '../../src/lab/iperf';
import type { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { type Pod, attachPod, podStateDir } from '../../src/lab/pods';
import type { Lab, LabNode } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

/** A pod on `node`, attached by the CNI plugins as kubelet would (its address is the destination the checks protect). */
function podOn(lab: Lab, overlay: Overlay, node: LabNode): Promise<Pod> {
  return attachPod(lab, node, 1, { subnetEnvFile: overlay.subnetFile(node), stateDir: podStateDir(overlay.workDir, node.name) });
}

const Hostile = suite('hostile input');
const FORGE = path.join(__dirname, 'forge.py');
/** Debian's python, where python3-scapy installs (scripts/ensure-tools.sh); a pyenv or venv python3 may lack it. */
const PYTHON = '/usr/bin/python3';
const FLOOD = path.join(__dirname, 'flood.child.ts');
const GSO_BURST = path.join(__dirname, 'gso-burst.py');

type Counters = { tunOut: { packets: number }; underlayIn: { packets: number }; underlayOut: { packets: number }; drops: Record<string, number> };
const countersOf = (status: AgentStatus): Counters => status.counters as Counters;

function waitForExit(overlay: Overlay, node: LabNode, timeoutMs: number): Promise<number | null> {
  const child = overlay.agents.get(node.name)!.process;
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent in ${node.name} still runs after ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

Hostile('our TUN deleted under the agent: it exits 1 with one log line saying so, no stack trace', async () => {
  await withOverlay('del', 1, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1] = lab.nodes;
    await overlay.startAgent(n1);
    const before = overlay.log(n1).length;
    await lab.exec(n1, 'ip', ['link', 'del', 'vxtun0']);
    const code = await waitForExit(overlay, n1, 10_000);
    const after = overlay.log(n1).slice(before);
    assert.is(code, 1, after);
    const errors = after.split('\n').filter((line) => line.startsWith('level=error'));
    assert.is(errors.length, 1, after);
    assert.match(errors[0], /TUN device vxtun0 is gone/);
    assert.match(errors[0], /EBADFD|EIO|ENODEV|EBADF/);
    assert.not.match(after, /^\s+at /m, 'no stack trace');
    assert.not.match(after, /Uncaught|uncaughtException|node:internal/);
  });
});

Hostile('TUN MTU raised by hand to 9000: a jumbo packet is dropped as tun/too-long, never sent; normal traffic goes on', async () => {
  await withOverlay('mtu', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node, ['--no-offload']);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    await lab.exec(n1, 'ip', ['link', 'set', 'vxtun0', 'mtu', '9000']);
    const sentBefore = countersOf(await overlay.status(n1)).underlayOut.packets;
    const jumbo = await ping(lab, n1, target, { count: 2, intervalSeconds: 0.2, size: 8000 });
    assert.is(jumbo.received, 0);
    const after = countersOf(await overlay.status(n1));
    assert.is(after.drops['tun/too-long'], 2, JSON.stringify(after.drops));
    assert.is(after.underlayOut.packets, sentBefore, 'nothing of the jumbo packets left the node');
    assert.is((await ping(lab, n1, target, { count: 3, intervalSeconds: 0.1 })).received, 3);
  });
});

interface Forged {
  what: string;
  from: LabNode;
  outerSrc: string;
  innerSrc: string;
  innerDst: string;
  srcMac?: string;
  reason: string;
}

for (const backend of ['vxlan', 'ipip'] as const) {
  Hostile(`${backend}: forged packets from a rogue namespace and from a leased node never reach a pod, each counted by reason`, async () => {
    await withOverlay(`fg${backend.slice(0, 2)}`, 3, { backend }, async (lab, overlay) => {
      const [n1, n2, rogue] = lab.nodes; // rogue: no agent, no lease
      for (const node of [n1, n2]) await overlay.startAgent(node);
      for (const node of [n1, n2]) await overlay.waitForRoutes(node, 1);
      const s1 = await overlay.status(n1);
      const s2 = await overlay.status(n2);
      const sub1 = (await overlay.subnetOf(n1)).address;
      const sub2 = (await overlay.subnetOf(n2)).address;
      const pod = (await podOn(lab, overlay, n2)).address;
      const mine = formatIPv4(sub1 + 7);
      const cases: Forged[] = [
        { what: 'a stranger', from: rogue, outerSrc: rogue.underlayIp, innerSrc: mine, innerDst: pod, reason: 'underlay/unknown-vtep' },
        { what: 'a stranger forging an unleased outer source', from: rogue, outerSrc: '192.0.2.99', innerSrc: mine, innerDst: pod, reason: 'underlay/unknown-vtep' },
        { what: 'a leased node forging a third subnet', from: n1, outerSrc: n1.underlayIp, innerSrc: '10.17.250.9', innerDst: pod, reason: 'inner-ipv4/spoofed-source' },
        { what: 'a leased node forging one of our pods', from: n1, outerSrc: n1.underlayIp, innerSrc: formatIPv4(sub2 + 9), innerDst: pod, reason: 'inner-ipv4/spoofed-source' },
        { what: 'a leased node routing through us to another subnet', from: n1, outerSrc: n1.underlayIp, innerSrc: mine, innerDst: '10.17.250.1', reason: 'inner-ipv4/not-for-us' },
        { what: 'a leased node reaching our host on the underlay', from: n1, outerSrc: n1.underlayIp, innerSrc: mine, innerDst: n2.underlayIp, reason: 'inner-ipv4/not-for-us' },
      ];
      if (backend === 'vxlan') {
        cases.push({ what: 'a frame with our own VTEP MAC as source (loop)', from: n1, outerSrc: n1.underlayIp, innerSrc: mine, innerDst: pod, srcMac: s2.lease.vtepMac, reason: 'ethernet/loop' });
      }
      const before = countersOf(await overlay.status(n2));
      const COUNT = 3;
      // One scapy run per sending namespace (its start-up is the slow part).
      for (const from of [rogue, n1]) {
        const specs = cases.filter((c) => c.from === from).map((c) => ({
          encap: backend, outerSrc: c.outerSrc, outerDst: n2.underlayIp, port: overlay.port, vni: overlay.vni,
          srcMac: c.srcMac ?? s1.lease.vtepMac, dstMac: s2.lease.vtepMac, innerSrc: c.innerSrc, innerDst: c.innerDst, count: COUNT,
        }));
        const { stdout } = await lab.exec(from, PYTHON, [FORGE, JSON.stringify(specs)]);
        assert.is(stdout.trim(), String(COUNT * specs.length), from.name);
      }
      // The control: the same tool, a legitimate packet from n1's lease to the pod, is delivered.
      const good = { encap: backend, outerSrc: n1.underlayIp, outerDst: n2.underlayIp, port: overlay.port, vni: overlay.vni, srcMac: s1.lease.vtepMac, dstMac: s2.lease.vtepMac, innerSrc: mine, innerDst: pod, count: 1 };
      await new Promise((resolve) => setTimeout(resolve, 300));
      const middle = countersOf(await overlay.status(n2));
      assert.is(middle.tunOut.packets, before.tunOut.packets, `nothing forged reached the TUN: ${JSON.stringify(middle.drops)}`);
      const expected = new Map<string, number>();
      for (const c of cases) expected.set(c.reason, (expected.get(c.reason) ?? 0) + COUNT);
      for (const [reason, n] of expected) assert.is((middle.drops[reason] ?? 0) - (before.drops[reason] ?? 0), n, `${reason}: ${JSON.stringify(middle.drops)}`);
      await lab.exec(n1, PYTHON, [FORGE, JSON.stringify([good])]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.is(countersOf(await overlay.status(n2)).tunOut.packets, before.tunOut.packets + 1, 'the control packet got in');
    });
  });
}

Hostile('a firewall dropping the overlay on the underlay (EPERM on send): counted, the agent keeps running, traffic resumes', async () => {
  await withOverlay('fw', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    await lab.exec(n1, 'nft', ['add', 'table', 'ip', 'vxtfw']);
    await lab.exec(n1, 'nft', ['add', 'chain', 'ip', 'vxtfw', 'out', '{ type filter hook output priority 0 ; policy accept ; }']);
    await lab.exec(n1, 'nft', ['add', 'rule', 'ip', 'vxtfw', 'out', 'udp', 'dport', String(overlay.port), 'drop']);
    assert.is((await ping(lab, n1, target, { count: 3, intervalSeconds: 0.1, replyTimeoutSeconds: 1 })).received, 0);
    const blocked = await overlay.status(n1);
    assert.ok((countersOf(blocked).drops['underlay/send-EPERM'] ?? 0) >= 3, JSON.stringify(countersOf(blocked).drops));
    assert.is(countersOf(blocked).drops['engine/internal-error'], undefined);
    const said = overlay.log(n1).split('\n').filter((line) => /send failed with EPERM/.test(line));
    assert.is(said.length, 1, `logged once: ${said.join('\n')}`);
    assert.match(said[0], /firewall/);
    await lab.exec(n1, 'nft', ['delete', 'table', 'ip', 'vxtfw']);
    assert.is((await ping(lab, n1, target, { count: 3, intervalSeconds: 0.1 })).received, 3);
    assert.is(overlay.agents.get(n1.name)!.process.exitCode, null);
  });
});

Hostile('a leased peer sending 128-segment UDP GSO bursts: every segment reaches the pod, the agent keeps running', async () => {
  await withOverlay('gso', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 1);
    const sub1 = (await overlay.subnetOf(n1)).address;
    const pod = (await podOn(lab, overlay, n2)).address;
    const s1 = await overlay.status(n1);
    const s2 = await overlay.status(n2);
    const before = countersOf(s2);
    const spec = {
      fromIp: n1.underlayIp, toIp: n2.underlayIp, port: overlay.port, vni: overlay.vni, srcMac: s1.lease.vtepMac, dstMac: s2.lease.vtepMac,
      innerSrc: formatIPv4(sub1 + 5), innerDst: pod, segments: 128, bursts: 100,
    };
    // The agent paused while the bursts queue up in its socket: its first rounds then read 64 GRO buffers of up to
    // 128 datagrams each, twice what its TUN queue holds (the overflow this guards against).
    const agentPid = overlay.agents.get(n2.name)!.process.pid!;
    process.kill(agentPid, 'SIGSTOP');
    let stdout: string;
    try {
      ({ stdout } = await lab.exec(n1, PYTHON, [GSO_BURST, JSON.stringify(spec)]));
    } finally {
      process.kill(agentPid, 'SIGCONT');
    }
    assert.is(Number(stdout.trim()), 12_800);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = countersOf(await overlay.status(n2));
    assert.is(overlay.agents.get(n2.name)!.process.exitCode, null, 'the agent still runs');
    assert.is(after.drops['engine/internal-error'], undefined, JSON.stringify(after.drops));
    // The socket may drop some under load (kernel receive queue); what arrives is all delivered.
    const received = after.underlayIn.packets - before.underlayIn.packets;
    assert.ok(received > 6_400, `received ${received} of 12,800`);
    assert.is(after.tunOut.packets - before.tunOut.packets, received, JSON.stringify(after.drops));
  });
});

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
}

Hostile('a flood of malformed VXLAN from a leased node while pods talk: no crash, RSS bounded, good traffic flows', async () => {
  await withOverlay('fld', 2, { backend: 'vxlan' }, async (lab: Lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 1);
    const sub1 = (await overlay.subnetOf(n1)).address;
    const sub2 = (await overlay.subnetOf(n2)).address;
    const pod = await podOn(lab, overlay, n2);
    const s1 = await overlay.status(n1);
    const s2 = await overlay.status(n2);
    const pid = overlay.agents.get(n2.name)!.process.pid!;
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /agent/);
    const rssBefore = rssKb(pid);
    const flood = lab.exec(n1, process.execPath, [
      '-r', 'tsx/cjs', FLOOD, n1.underlayIp, n2.underlayIp, String(overlay.port), String(overlay.vni),
      s1.lease.vtepMac!, s2.lease.vtepMac!, formatIPv4(sub1), formatIPv4(sub2), '150000', '8',
    ], { timeoutMs: 30_000 });
    const during = await ping(lab, n1, pod.address, { count: 20, intervalSeconds: 0.1 });
    const { stdout } = await flood;
    const sent = (JSON.parse(stdout.trim().split('\n').pop()!) as { sent: number }).sent;
    assert.ok(sent > 10_000, `flood sent ${sent}`);
    assert.ok(during.received > 0, 'pings got through during the flood');
    const after = await overlay.status(n2);
    const counters = countersOf(after);
    assert.is(overlay.agents.get(n2.name)!.process.exitCode, null, 'the agent still runs');
    assert.ok(counters.underlayIn.packets > 10_000, `the agent saw the flood (${counters.underlayIn.packets})`);
    assert.is(counters.drops['engine/internal-error'], undefined, JSON.stringify(counters.drops));
    assert.is(after.pool?.inUse, 0, 'no slot leaked');
    const grownKb = rssKb(pid) - rssBefore;
    assert.ok(grownKb < 64 * 1024, `RSS grew by ${grownKb} kB`);
    assert.is((await ping(lab, n1, pod.address, { count: 3, intervalSeconds: 0.1 })).received, 3);
    const tcp = await runIperf(lab, { server: pod, client: n1, address: pod.address, seconds: 1 });
    assert.ok(tcp.bytes > 100_000, `iperf3 moved ${tcp.bytes} bytes after the flood`);
  });
});

Hostile.run();
