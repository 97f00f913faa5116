// The bgp backend with real bird2 processes in namespaces (Calico's BGP mode): each agent runs its own BIRD, the
// nodes learn each other's blocks over iBGP, and pod traffic goes direct (encap none), in vxtun's IP-in-IP (ipip), or
// either by subnet (ipip-crosssubnet). Bounds are generous for a loaded 2-core machine; bench/bgp.ts measures.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import type { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { addPodAddress } from '../../src/lab/pods';
import type { Lab, LabNode } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const Bgp = suite('bgp backend (bird2)');

async function podOf(overlay: Overlay, node: LabNode): Promise<string> {
  return formatIPv4((await overlay.subnetOf(node)).address + 1);
}

async function startAll(lab: Lab, overlay: Overlay, nodes: readonly LabNode[] = lab.nodes): Promise<void> {
  await Promise.all(nodes.map((node) => overlay.startAgent(node)));
  for (const node of nodes) await overlay.waitForRoutes(node, nodes.length - 1, 20_000);
  for (const node of nodes) await addPodAddress(lab, node, await podOf(overlay, node));
}

async function pingPods(lab: Lab, overlay: Overlay): Promise<void> {
  for (const from of lab.nodes) {
    for (const to of lab.nodes) {
      if (from === to) continue;
      const target = await podOf(overlay, to);
      assert.is((await ping(lab, from, target, { count: 2, intervalSeconds: 0.1 })).received, 2, `${from.name} -> ${to.name} ${target}`);
    }
  }
}

function bgpOf(status: AgentStatus): NonNullable<AgentStatus['bgp']> {
  assert.ok(status.bgp, 'status has a bgp section');
  return status.bgp!;
}

Bgp('encap none: BIRD programs <block> via <PublicIP> in the main table, no TUN; pods ping each other', async () => {
  await withOverlay('bgpn', 3, { backend: 'bgp' }, async (lab, overlay) => {
    await startAll(lab, overlay);
    const n2Subnet = (await overlay.status(lab.node(2))).lease.subnet;
    const { stdout } = await lab.exec(lab.node(1), 'ip', ['route', 'show', n2Subnet]);
    assert.match(stdout, new RegExp(`via ${lab.node(2).underlayIp.replace(/\./g, '\\.')} dev eth0 proto bird`));
    const own = await lab.exec(lab.node(1), 'ip', ['route', 'show', 'proto', 'bird', 'type', 'blackhole']);
    assert.match(own.stdout, new RegExp(`blackhole ${(await overlay.status(lab.node(1))).lease.subnet.replace(/\./g, '\\.')}`));
    const status = await overlay.status(lab.node(1));
    assert.is(status.tun, undefined);
    assert.ok(status.routes.every((r) => r.encap === 'direct'));
    const bgp = bgpOf(status);
    assert.is(bgp.peers.length, 2);
    await pingPods(lab, overlay);
  });
});

Bgp.run();
