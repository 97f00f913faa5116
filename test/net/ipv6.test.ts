// Issue 12 end to end: vxtun labs carrying IPv6 pods, built as `vxtun lab up --ipv6 | --ipv6-only | --ipv6-underlay`
// builds them (buildOverlayLab: real agents, pods attached by the CNI plugins), and the kernel's VXLAN devices
// programmed as a dual-stack flanneld programs them. These need the three IPv6 branches together: the lab and the
// IPv6 underlay socket (v6-underlay), the IPv6 data plane (v6-core) and the IPv6 config, leases and agent flags
// (v6-control: `vxtun init --ipv6-network/--ipv6-only`, `vxtun agent --public-ipv6`).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildOverlayLab, type OverlayLab, type OverlayLabOptions } from '../../src/cli/commands/lab';
import { runIperf } from '../../src/lab/iperf';
import { ping } from '../../src/lab/ping';
import type { Pod } from '../../src/lab/pods';
import { CommandError } from '../../src/lab/shell';

const test = suite('IPv6 overlays (dual-stack, IPv6-only, IPv6 underlay, kernel interop, Packet Too Big)');

let built: OverlayLab | undefined;
let serial = 0;

/** Builds a lab for one test; the test's finally removes it (agents, pods, namespaces), printing logs on failure. */
async function buildLab(options: Omit<OverlayLabOptions, 'name' | 'persistent'>): Promise<OverlayLab> {
  built = await buildOverlayLab({ name: `vxt-v6${process.pid}-${++serial}`, persistent: false, ...options });
  return built;
}

async function teardown(failed: boolean): Promise<void> {
  if (built === undefined) return;
  if (failed) for (const node of built.lab.nodes) process.stderr.write(`--- agent log ${node.name}\n${built.overlay.log(node)}`);
  await built.overlay.close().catch(() => undefined);
  await built.lab.destroy();
  built = undefined;
}

async function withLab(options: Omit<OverlayLabOptions, 'name' | 'persistent'>, body: (lab: OverlayLab) => Promise<void>): Promise<void> {
  let failed = true;
  try {
    await body(await buildLab(options));
    failed = false;
  } finally {
    await teardown(failed);
  }
}

/** Every ordered pair of pods on different nodes. */
function pairs(pods: Pod[]): Array<[Pod, Pod]> {
  return pods.flatMap((a) => pods.filter((b) => b.node !== a.node).map((b): [Pod, Pod] => [a, b]));
}

async function assertPings(o: OverlayLab, from: Pod, to: string, what: string): Promise<void> {
  const result = await ping(o.lab, from, to, { count: 3, intervalSeconds: 0.2 });
  assert.is(result.received, 3, `${what}: ${from.name} -> ${to}`);
}

test('dual-stack (--ipv6): every pair of pods pings over IPv4 and IPv6, TCP over IPv6', async () => {
  await withLab({ nodes: 3, backend: 'vxlan', pods: 1, ipv6: {} }, async (o) => {
    assert.is(o.pods.length, 3);
    for (const pod of o.pods) {
      assert.match(pod.address, /^10\.17\./, 'an IPv4 address');
      assert.match(pod.address6 ?? '', /^fd00:17:/, 'and an IPv6 one, from FLANNEL_IPV6_SUBNET');
    }
    assert.is(new Set(o.pods.map((p) => p.address6!.split('::')[0])).size, 3, 'one IPv6 subnet per node');
    for (const [a, b] of pairs(o.pods)) {
      await assertPings(o, a, b.address, 'IPv4');
      await assertPings(o, a, b.address6!, 'IPv6');
    }
    const [p1, p2] = o.pods;
    const tcp = await runIperf(o.lab, { server: p2!, client: p1!, address: p2!.address6!, seconds: 1 });
    assert.ok(tcp.bytes > 1_000_000, `TCP over IPv6 carried ${tcp.bytes} bytes`);
  });
});

test('IPv6-only (--ipv6-only): pods have no IPv4, ping and TCP over IPv6', async () => {
  await withLab({ nodes: 2, backend: 'vxlan', pods: 1, ipv6: { only: true } }, async (o) => {
    for (const pod of o.pods) {
      assert.is(pod.address, pod.address6, 'the pod\'s only address is IPv6');
      const v4 = (await o.lab.exec(pod, 'ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
      assert.not.match(v4, /inet /);
    }
    assert.ok(o.record.nodes.every((n) => n.subnet === '-' && n.subnet6 !== undefined), 'the record has IPv6 subnets only');
    for (const [a, b] of pairs(o.pods)) await assertPings(o, a, b.address6!, 'IPv6-only');
    const [p1, p2] = o.pods;
    const tcp = await runIperf(o.lab, { server: p2!, client: p1!, address: p2!.address6!, seconds: 1 });
    assert.ok(tcp.bytes > 1_000_000, `TCP carried ${tcp.bytes} bytes`);
  });
});

test('IPv6 underlay (--ipv6-underlay): agents bind [PublicIPv6]:port, and IPv6 pods still talk once the IPv4 underlay is gone', async () => {
  await withLab({ nodes: 2, backend: 'vxlan', pods: 1, ipv6: { underlay: true } }, async (o) => {
    const [n1, n2] = o.lab.nodes;
    const sockets = (await o.lab.exec(n1!, 'ss', ['-Hlun'])).stdout;
    assert.match(sockets, /\[2001:db8:1::11\]:4789/, `the agent's IPv6 underlay socket:\n${sockets}`);
    const [p1, p2] = o.pods;
    await assertPings(o, p1!, p2!.address6!, 'IPv6 over the IPv6 underlay');
    // A pod-MTU-sized IPv6 packet fits (1500 - 50 - 20 = 1430: 48 bytes of IPv6 + ICMPv6 headers, the rest payload).
    const full = await ping(o.lab, p1!, p2!.address6!, { count: 2, intervalSeconds: 0.2, size: 1430 - 48, dontFragment: true });
    assert.is(full.received, 2, 'a full 1430-byte IPv6 packet crosses the IPv6 underlay');
    // Only IPv6 left between the nodes: IPv6 pod traffic must be going over it (fdb6, PublicIPv6), not over IPv4.
    for (const node of [n1!, n2!]) await o.lab.exec(node, 'ip', ['-4', 'addr', 'flush', 'dev', node.underlayDev]);
    await assertPings(o, p1!, p2!.address6!, 'IPv6 with no IPv4 underlay');
    const tcp = await runIperf(o.lab, { server: p2!, client: p1!, address: p2!.address6!, seconds: 1 });
    assert.ok(tcp.bytes > 1_000_000, `TCP over VXLAN over IPv6 carried ${tcp.bytes} bytes`);
  });
});

test('kernel interop both ways: a dual-stack flannel kernel node (flannel.1 + flannel-v6.1, its lease in flannel\'s layout), ping6 and TCP', async () => {
  await withLab({ nodes: 2, backend: 'vxlan', pods: 1, kernelPeer: true, ipv6: { underlay: true } }, async (o) => {
    const kernel = o.record.nodes.find((n) => n.kind === 'kernel')!;
    assert.ok(kernel.subnet6 !== undefined, 'the kernel node holds an IPv6 lease');
    const leases = await o.overlay.withStore(async (store) => (await store.list('/coreos.com/network/subnets/')).kvs);
    const key = leases.find((kv) => kv.key.endsWith(`&${kernel.subnet6!.replace('/', '-')}`));
    assert.ok(key !== undefined, `the kernel node's dual-stack key (…&${kernel.subnet6}): ${leases.map((kv) => kv.key).join(', ')}`);
    const podV = o.pods.find((p) => p.node !== kernel.name)!;
    const podK = o.pods.find((p) => p.node === kernel.name)!;
    await assertPings(o, podV, podK.address6!, 'vxtun -> kernel over IPv6');
    await assertPings(o, podK, podV.address6!, 'kernel -> vxtun over IPv6');
    await assertPings(o, podV, podK.address, 'and IPv4 still');
    const there = await runIperf(o.lab, { server: podK, client: podV, address: podK.address6!, seconds: 1 });
    assert.ok(there.bytes > 1_000_000, `TCP vxtun -> kernel carried ${there.bytes} bytes`);
    const back = await runIperf(o.lab, { server: podV, client: podK, address: podV.address6!, seconds: 1 });
    assert.ok(back.bytes > 1_000_000, `TCP kernel -> vxtun carried ${back.bytes} bytes`);
  });
});

test('Packet Too Big crosses the overlay and TCP adapts: a 1280-byte hop behind the far node, smaller than the pod MTU', async () => {
  await withLab({ nodes: 2, backend: 'vxlan', pods: 1, ipv6: { underlay: true } }, async (o) => {
    const [p1, p2] = o.pods;
    assert.ok(p1!.mtu > 1280, `pod MTU ${p1!.mtu}`);
    // The far node routes to its pod through a 1280-byte route: IPv6 routers never fragment, so its kernel answers a
    // bigger packet with ICMPv6 Packet Too Big to the sender, back through vxtun (issue 12; RFC 8200 section 5).
    const farNode = o.lab.nodes.find((n) => n.name === p2!.node)!;
    await o.lab.exec(farNode, 'ip', ['-6', 'route', 'replace', `${p2!.address6}/128`, 'dev', 'cni0', 'mtu', '1280']);
    let big: string;
    try {
      await o.lab.exec(p1!, 'ping', ['-n', '-c', '1', '-W', '2', '-s', '1300', p2!.address6!]);
      big = 'reply';
    } catch (error) {
      big = error instanceof CommandError ? error.stdout + error.stderr : String(error);
    }
    assert.match(big, /[Pp]acket too big|mtu ?= ?1280/, `the sender hears Packet Too Big:\n${big}`);
    const tcp = await runIperf(o.lab, { server: p2!, client: p1!, address: p2!.address6!, seconds: 2 });
    assert.ok(tcp.bytes > 1_000_000, `TCP completed over the narrower path: ${tcp.bytes} bytes`);
    const route = (await o.lab.exec(p1!, 'ip', ['-6', 'route', 'get', p2!.address6!])).stdout;
    assert.match(route, /mtu 1280/, `the sender cached the path MTU:\n${route}`);
  });
});

test.after(async () => {
  await teardown(true);
});

test.run();
