// vxtun agents in network namespaces, for real: TUN devices, UDP and raw sockets, one embedded store.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, subnetKey } from '../../src/control/lease';
import { runIperf } from '../../src/lab/iperf';
import type { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { type Pod, attachPod, podStateDir } from '../../src/lab/pods';
import type { Lab, LabNode } from '../../src/lab/topology';
import { withOverlay } from '../support/overlay';
import { formatCidr, formatIPv4 } from '../../src/wire/address';

const Net = suite('overlay in namespaces');

async function startAll(overlay: Overlay, nodes: readonly LabNode[]): Promise<void> {
  for (const node of nodes) await overlay.startAgent(node);
  for (const node of nodes) await overlay.waitForRoutes(node, nodes.length - 1);
}

async function assertFullMesh(lab: Lab, overlay: Overlay, nodes: readonly LabNode[]): Promise<void> {
  for (const from of nodes) {
    for (const to of nodes) {
      if (from === to) continue;
      const target = formatIPv4((await overlay.subnetOf(to)).address);
      const result = await ping(lab, from, target, { count: 3, intervalSeconds: 0.1 });
      assert.is(result.received, 3, `${from.name} -> ${to.name} (${target})`);
    }
  }
}

/** Ping between every pair of pods (real pod namespaces, attached by the CNI plugins). */
async function assertPodMesh(lab: Lab, pods: readonly Pod[]): Promise<void> {
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      const result = await ping(lab, from, to.address, { count: 3, intervalSeconds: 0.1 });
      assert.is(result.received, 3, `pod ${from.name} -> pod ${to.name} (${to.address})`);
    }
  }
}

const MESH_CASES: { name: string; backend: 'vxlan' | 'ipip'; args: string[]; vni?: number; port?: number }[] = [
  { name: 'flannel-style vxlan (VNI 1, port 8472)', backend: 'vxlan', args: [], vni: 1, port: 8472 },
  { name: 'Calico-style vxlan (VNI 4096, port 4789)', backend: 'vxlan', args: [], vni: 4096, port: 4789 },
  { name: 'ipip', backend: 'ipip', args: [] },
  { name: 'vxlan without offloads (one packet per system call)', backend: 'vxlan', args: ['--no-offload'] },
];

for (const { name, backend, args, vni, port } of MESH_CASES) {
  Net(`${name}: three nodes ping every pair, TUN addresses and pods; TCP runs across two pods`, async () => {
    await withOverlay(backend.slice(0, 2), 3, { backend, vni, port }, async (lab, overlay) => {
      for (const node of lab.nodes) await overlay.startAgent(node, [...args]);
      for (const node of lab.nodes) await overlay.waitForRoutes(node, lab.nodes.length - 1);
      const pods: Pod[] = [];
      for (const node of lab.nodes) {
        pods.push(await attachPod(lab, node, 1, { subnetEnvFile: overlay.subnetFile(node), stateDir: podStateDir(overlay.workDir, node.name) }));
      }
      await assertFullMesh(lab, overlay, lab.nodes);
      await assertPodMesh(lab, pods);
      const [from, to] = pods;
      const tcp = await runIperf(lab, { server: to!, client: from!, address: to!.address, seconds: 2 });
      assert.ok(tcp.bytes > 1_000_000, `iperf3 moved ${tcp.bytes} bytes`);
      const status = await overlay.status(lab.node(2));
      const counters = status.counters as { tunOut: { packets: number }; drops: Record<string, number> };
      assert.ok(counters.tunOut.packets > 100);
      assert.equal(Object.keys(counters.drops).filter((d) => !d.startsWith('tun-ipv4/ipv6')), [], 'no drops but the IPv6 the kernel sent before we silenced it');
      assert.is(status.tun?.mtu, backend === 'vxlan' ? 1450 : 1480);
      if (vni !== undefined) assert.equal(status.network.backend, { type: 'vxlan', vni, port, directRouting: false });
    });
  });
}

for (const backend of ['vxlan', 'ipip'] as const) {
  Net(`${backend}: a small-MSS TCP flow is carried, not dropped as super-packets of more segments than we cut`, async () => {
    await withOverlay(`mss${backend[0]}`, 2, { backend }, async (lab, overlay) => {
      await startAll(overlay, lab.nodes);
      const [n1, n2] = lab.nodes;
      const to = formatIPv4((await overlay.subnetOf(n2)).address);
      // MSS 88: a 64 KB super-packet would be ~740 segments; the TUN's gso_max_segs keeps the kernel's bursts small.
      const tcp = await runIperf(lab, { server: n2, client: n1, address: to, seconds: 2, mss: 88 });
      assert.ok(tcp.bytes > 500_000, `iperf3 -M 88 moved ${tcp.bytes} bytes`);
      const drops = (await overlay.status(n1)).counters as { drops: Record<string, number> };
      assert.is(drops.drops['gso/cannot-segment'], undefined, JSON.stringify(drops.drops));
      assert.match((await lab.exec(n1, 'ip', ['-d', 'link', 'show', 'vxtun0'])).stdout, /gso_max_segs 64/);
    });
  });
}

Net('a killed agent: peers keep forwarding to the others and drop its routes once its lease is removed', async () => {
  await withOverlay('kill', 3, { backend: 'vxlan' }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    const [n1, n2, n3] = lab.nodes;
    const gone = await overlay.subnetOf(n3);
    await overlay.stopAgent(n3, 'SIGKILL');
    // Until the lease goes, peers keep the route (the node may come back, as in flannel).
    assert.is((await overlay.status(n1)).routes.length, 2);
    await overlay.withStore((store) => store.delete(subnetKey(DEFAULT_PREFIX, gone)));
    await overlay.waitForRoutes(n1, 1, 3000);
    await overlay.waitForRoutes(n2, 1, 3000);
    await assertFullMesh(lab, overlay, [n1, n2]);
  });
});

Net('a restarted agent gets back its subnet and its VTEP MAC, so peers need no change', async () => {
  await withOverlay('rst', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    const [n1, n2] = lab.nodes;
    const before = await overlay.status(n2);
    await overlay.stopAgent(n2, 'SIGKILL');
    await overlay.startAgent(n2);
    const after = await overlay.waitForRoutes(n2, 1);
    assert.is(after.lease.subnet, before.lease.subnet);
    assert.is(after.lease.vtepMac, before.lease.vtepMac);
    const peerView = await overlay.status(n1);
    assert.is(peerView.fdb.length, 1);
    assert.is(peerView.fdb[0].mac, before.lease.vtepMac);
    await assertFullMesh(lab, overlay, lab.nodes);
  });
});

Net('a lease that expires (short TTL, agent killed) disappears from its peers by itself', async () => {
  await withOverlay('ttl', 2, { backend: 'ipip', leaseTtlSeconds: 5 }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    await overlay.stopAgent(lab.node(2), 'SIGKILL');
    await overlay.waitForRoutes(lab.node(1), 0, 12_000);
  });
});

Net("interop with Linux's VXLAN device programmed as flannel programs it: ping and TCP both ways", async () => {
  await withOverlay('kern', 3, { backend: 'vxlan', port: 8472 }, async (lab, overlay) => {
    const [n1, n2, kernel] = lab.nodes;
    await startAll(overlay, [n1, n2]);
    // A subnet neither agent chose (theirs are random), as flanneld would pick a free one.
    const taken = new Set([formatCidr(await overlay.subnetOf(n1)), formatCidr(await overlay.subnetOf(n2))]);
    await overlay.addKernelNode(kernel, ['10.17.250.0/24', '10.17.251.0/24', '10.17.252.0/24'].find((c) => !taken.has(c))!);
    await overlay.waitForRoutes(n1, 2);
    await overlay.waitForRoutes(n2, 2);
    await assertFullMesh(lab, overlay, [n1, n2]);
    for (const node of [n1, n2]) {
      const subnet = formatIPv4((await overlay.subnetOf(node)).address);
      assert.is((await ping(lab, node, '10.17.250.0', { count: 3, intervalSeconds: 0.1 })).received, 3, `${node.name} -> kernel`);
      assert.is((await ping(lab, kernel, subnet, { count: 3, intervalSeconds: 0.1 })).received, 3, `kernel -> ${node.name}`);
    }
    const vxtunAddress = formatIPv4((await overlay.subnetOf(n1)).address);
    const toVxtun = await runIperf(lab, { server: n1, client: kernel, address: vxtunAddress, seconds: 2 });
    assert.ok(toVxtun.bytes > 1_000_000, `kernel -> vxtun moved ${toVxtun.bytes} bytes`);
    const fromVxtun = await runIperf(lab, { server: kernel, client: n1, address: '10.17.250.0', seconds: 2 });
    assert.ok(fromVxtun.bytes > 1_000_000, `vxtun -> kernel moved ${fromVxtun.bytes} bytes`);
  });
});

Net.run();
