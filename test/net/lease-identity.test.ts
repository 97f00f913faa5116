// What the store says is checked before it reaches the tables, and a node is its name, not its address: real agents
// in namespaces, one embedded store.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, formatLeaseAttrs, parseLeaseAttrs, subnetKey } from '../../src/control/lease';
import { type Overlay, labSubnetMax } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import type { Lab, LabNode } from '../../src/lab/topology';
import { formatCidr, formatIPv4, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const Net = suite('lease checks and node identity in namespaces');

async function startAll(overlay: Overlay, nodes: readonly LabNode[]): Promise<void> {
  for (const node of nodes) await overlay.startAgent(node);
  for (const node of nodes) await overlay.waitForRoutes(node, nodes.length - 1);
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function pingOnce(lab: Lab, from: LabNode, address: string): Promise<number> {
  return (await ping(lab, from, address, { count: 3, intervalSeconds: 0.1 })).received;
}

Net("a stray /25 inside B's /24 is refused, and B stays reachable while it lives and after it expires", async () => {
  await withOverlay('stray', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    const [a, b] = lab.nodes;
    const bSubnet = await overlay.subnetOf(b);
    const bAddress = formatIPv4(bSubnet.address);
    const strayKey = subnetKey(DEFAULT_PREFIX, { address: bSubnet.address, prefixLength: 25 });
    // Pings from A to B all along: 60 at 0.1 s, about 6 s, across the stray lease's whole life (TTL 2 s).
    const pinging = ping(lab, a, bAddress, { count: 60, intervalSeconds: 0.1 });
    // Awaited below; when an assertion fails first, teardown kills ping, and that rejection must not crash the run.
    pinging.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stray = formatLeaseAttrs({
      publicIp: parseIPv4('192.0.2.99'),
      backendType: 'vxlan',
      backendData: { vni: 1, vtepMac: parseMac('66:00:00:00:00:99') },
    });
    await overlay.withStore((store) => store.put(strayKey, stray, { ttlSeconds: 2 }));
    await waitFor('A to list the stray lease as refused', 3000, async () => (await overlay.status(a)).refusedLeases.some((r) => r.key === strayKey));
    const during = await overlay.status(a);
    assert.equal(during.refusedLeases, [{ key: strayKey, reason: `overlaps ${bAddress}/24 of ${b.underlayIp}` }]);
    assert.equal(during.neighbors.map((n) => n.address), [bAddress], "B's neighbor entry only");
    await waitFor('the stray lease to expire', 6000, async () => (await overlay.status(a)).refusedLeases.length === 0);
    const result = await pinging;
    assert.is(result.received, 60, `A -> B lost ${60 - result.received} of 60 pings while the stray lease came and went`);
    const after = await overlay.status(a);
    assert.equal(after.neighbors.map((n) => n.address), [bAddress], "B's neighbor entry is still there");
    assert.is(await pingOnce(lab, a, bAddress), 3);

    // The network config changing under the agents: shown as a mismatch, the data plane keeps its config.
    const running = after.network.backend;
    assert.ok(running.type === 'vxlan');
    const changed = { Network: overlay.network, SubnetMax: formatIPv4(labSubnetMax(overlay.network)!), Backend: { Type: 'vxlan', VNI: 2, Port: running.port } };
    await overlay.withStore((store) => store.put(`${DEFAULT_PREFIX}/config`, JSON.stringify(changed)));
    await waitFor('A to report the config mismatch', 3000, async () => (await overlay.status(a)).configMismatch !== undefined);
    assert.equal((await overlay.status(a)).configMismatch?.differences, ['Backend.VNI 1 -> 2']);
    assert.is(await pingOnce(lab, a, bAddress), 3, 'still forwarding with the running config');
  });
});

Net('a node restarted with a new public IP keeps its subnet and VTEP MAC; its lease is updated in place; peers reach it', async () => {
  await withOverlay('newip', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    const [a, b] = lab.nodes;
    const before = await overlay.status(b);
    await overlay.stopAgent(b);
    const newIp = '192.0.2.201';
    await lab.exec(b, 'ip', ['addr', 'del', `${b.underlayIp}/24`, 'dev', b.underlayDev]);
    await lab.exec(b, 'ip', ['addr', 'add', `${newIp}/24`, 'dev', b.underlayDev]);
    await overlay.startAgent(b, [], newIp);
    const after = await overlay.waitForRoutes(b, 1);
    assert.is(after.lease.subnet, before.lease.subnet, 'same subnet');
    assert.is(after.lease.vtepMac, before.lease.vtepMac, 'same VTEP MAC');
    assert.is(after.lease.publicIp, newIp);
    assert.is(after.lease.nodeName, b.netns);
    const subnet = await overlay.subnetOf(b);
    const { kvs } = await overlay.withStore((store) => store.list(`${DEFAULT_PREFIX}/subnets/`));
    assert.is(kvs.length, 2, 'one lease per node: no second lease for the new address');
    const stored = kvs.find((kv) => kv.key === subnetKey(DEFAULT_PREFIX, subnet));
    assert.ok(stored, 'the lease at the old key');
    assert.is(formatIPv4(parseLeaseAttrs(stored.value).publicIp), newIp, 'PublicIP updated in place');
    await waitFor("A's FDB to point at B's new address", 3000, async () => {
      const fdb = (await overlay.status(a)).fdb;
      return fdb.length === 1 && fdb[0].dst === newIp && fdb[0].mac === before.lease.vtepMac;
    });
    assert.is(await pingOnce(lab, a, formatIPv4(subnet.address)), 3, 'A -> B at its new address');
    assert.is(await pingOnce(lab, b, formatIPv4((await overlay.subnetOf(a)).address)), 3, 'B -> A');
  });
});

Net('leases naming a loopback or multicast PublicIP, or this node\'s own address, are refused and never programmed', async () => {
  await withOverlay('pubip', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    await startAll(overlay, lab.nodes);
    const [a, b] = lab.nodes;
    // Subnets neither node holds (their leases are random): writing over a real lease would test something else.
    const taken = new Set([formatCidr(await overlay.subnetOf(a)), formatCidr(await overlay.subnetOf(b))]);
    const [s1, s2, s3] = [240, 241, 242, 243, 244, 245].map((n) => `10.17.${n}.0/24`).filter((c) => !taken.has(c));
    const written: Array<[string, string, string]> = [
      [s1, '127.0.0.1', 'PublicIP 127.0.0.1 is a loopback address (127.0.0.0/8), not a node\'s underlay address'],
      [s2, '224.0.0.5', 'PublicIP 224.0.0.5 is a multicast address (224.0.0.0/4), not a node\'s underlay address'],
      [s3, a.underlayIp, `PublicIP ${a.underlayIp} names this node's own address`],
    ];
    const keyOf = (subnet: string) => subnetKey(DEFAULT_PREFIX, parseCidr(subnet));
    await overlay.withStore(async (store) => {
      for (const [i, [subnet, publicIp]] of written.entries()) {
        const attrs = { publicIp: parseIPv4(publicIp), backendType: 'vxlan', backendData: { vni: 1, vtepMac: parseMac(`66:00:00:00:00:5${i}`) } };
        await store.put(keyOf(subnet), formatLeaseAttrs(attrs));
      }
    });
    await waitFor('A to refuse all three', 3000, async () => (await overlay.status(a)).refusedLeases.length === 3);
    const status = await overlay.status(a);
    assert.equal(status.refusedLeases, written.map(([subnet, , reason]) => ({ key: keyOf(subnet), reason })).sort((x, y) => (x.key < y.key ? -1 : 1)));
    assert.equal(status.fdb.map((f) => f.dst), [b.underlayIp], "A's FDB holds B only");
    // On B, A's address is another node's: only the two unusable ones are refused.
    await waitFor('B to refuse two', 3000, async () => (await overlay.status(b)).refusedLeases.length === 2);
    assert.is(await pingOnce(lab, a, formatIPv4((await overlay.subnetOf(b)).address)), 3, 'A -> B');
  });
});

Net.run();
