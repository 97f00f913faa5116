// The routing modes besides plain encapsulation: flannel's host-gw, and DirectRouting (Calico's CrossSubnet).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, formatLeaseAttrs, subnetKey } from '../../src/control/lease';
import type { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { type Pod, attachPod, podStateDir } from '../../src/lab/pods';
import type { Lab, LabNode } from '../../src/lab/topology';
import { withOverlay } from '../support/overlay';
import { formatCidr, parseCidr, parseIPv4 } from '../../src/wire/address';

const Modes = suite('routing modes');

/** A pod on `node`, attached by the CNI plugins from the subnet.env its agent wrote. */
function podOn(lab: Lab, overlay: Overlay, node: LabNode): Promise<Pod> {
  return attachPod(lab, node, 1, { subnetEnvFile: overlay.subnetFile(node), stateDir: podStateDir(overlay.workDir, node.name) });
}

async function pingPods(lab: Lab, pods: readonly Pod[]): Promise<void> {
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      assert.is((await ping(lab, from, to.address, { count: 2, intervalSeconds: 0.1 })).received, 2, `pod ${from.name} -> pod ${to.name} ${to.address}`);
    }
  }
}

Modes('host-gw: kernel routes via each peer, no TUN; a peer off our L2 segment is refused with the reason', async () => {
  await withOverlay('hg', 3, { backend: 'host-gw' }, async (lab, overlay) => {
    for (const node of lab.nodes) await overlay.startAgent(node);
    const pods: Pod[] = [];
    for (const node of lab.nodes) {
      await overlay.waitForRoutes(node, 2);
      pods.push(await podOn(lab, overlay, node));
    }
    const n2Subnet = (await overlay.status(lab.node(2))).lease.subnet;
    const { stdout } = await lab.exec(lab.node(1), 'ip', ['route', 'show', n2Subnet]);
    assert.match(stdout, new RegExp(`via ${lab.node(2).underlayIp.replace(/\./g, '\\.')} dev eth0`));
    const status = await overlay.status(lab.node(1));
    assert.is(status.tun, undefined);
    assert.ok(status.routes.every((r) => r.encap === 'direct'));
    await pingPods(lab, pods);
    // A node flanneld would have put on another subnet (one no agent here holds): host-gw cannot reach it.
    const taken = new Set(await Promise.all(lab.nodes.map(async (node) => formatCidr(await overlay.subnetOf(node)))));
    const far = ['10.17.200.0/24', '10.17.201.0/24', '10.17.202.0/24', '10.17.203.0/24'].find((c) => !taken.has(c))!;
    await overlay.withStore((store) =>
      store.put(subnetKey(DEFAULT_PREFIX, parseCidr(far)), formatLeaseAttrs({ publicIp: parseIPv4('198.51.100.5'), backendType: 'host-gw' })),
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(overlay.log(lab.node(1)).includes(`host-gw cannot reach ${far}: its node 198.51.100.5 is not on our L2 subnet`), overlay.log(lab.node(1)));
    assert.is((await overlay.status(lab.node(1))).routes.length, 2);
  });
});

Modes('vxlan with DirectRouting: direct to the node on our subnet, VXLAN to the one across', async () => {
  await withOverlay('dr', 3, { backend: 'vxlan', directRouting: true }, async (lab, overlay) => {
    const [n1, n2, n3] = lab.nodes;
    // n3 sits on another IP subnet of the same wire: reachable, but not L2-adjacent by address.
    await lab.exec(n3, 'ip', ['addr', 'add', '198.51.100.13/24', 'dev', 'eth0']);
    for (const node of [n1, n2]) await lab.exec(node, 'ip', ['route', 'add', '198.51.100.0/24', 'dev', 'eth0']);
    await overlay.startAgent(n1);
    await overlay.startAgent(n2);
    await overlay.startAgent(n3, [], '198.51.100.13');
    const pods: Pod[] = [];
    for (const node of lab.nodes) {
      await overlay.waitForRoutes(node, 2);
      pods.push(await podOn(lab, overlay, node));
    }
    const [p1, p2, p3] = pods;
    const routes = (await overlay.status(n1)).routes;
    const n2Subnet = (await overlay.status(n2)).lease.subnet;
    const n3Subnet = (await overlay.status(n3)).lease.subnet;
    assert.is(routes.find((r) => r.subnet === n2Subnet)?.encap, 'direct');
    assert.is(routes.find((r) => r.subnet === n3Subnet)?.encap, 'vxlan');
    const sentBefore = ((await overlay.status(n1)).counters as { underlayOut: { packets: number } }).underlayOut.packets;
    assert.is((await ping(lab, p1!, p2!.address, { count: 3, intervalSeconds: 0.1 })).received, 3);
    const sentAfterDirect = ((await overlay.status(n1)).counters as { underlayOut: { packets: number } }).underlayOut.packets;
    assert.is(sentAfterDirect, sentBefore, 'the direct route bypasses the tunnel');
    assert.is((await ping(lab, p1!, p3!.address, { count: 3, intervalSeconds: 0.1 })).received, 3);
    const sentAfterVxlan = ((await overlay.status(n1)).counters as { underlayOut: { packets: number } }).underlayOut.packets;
    assert.is(sentAfterVxlan - sentAfterDirect, 3, 'across subnets, VXLAN');
    await pingPods(lab, pods);
  });
});

Modes.run();
