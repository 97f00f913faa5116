// vxtun agents on a real etcd, as in a cluster: etcd runs on the lab's underlay (the hub namespace, 192.0.2.2:2379)
// and agents in the node namespaces reach it over the underlay. An etcd outage must not stop forwarding; after it the
// agents reconnect and catch up on what they missed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { DEFAULT_PREFIX, formatLeaseAttrs, subnetKey } from '../../src/control/lease';
import { Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { run } from '../../src/lab/shell';
import { type Lab, type LabNode, createLab } from '../../src/lab/topology';
import { formatIPv4, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

const Etcd = suite('agents on a real etcd on the lab underlay');

async function withEtcdOverlay(tag: string, nodes: number, body: (lab: Lab, overlay: Overlay) => Promise<void>): Promise<void> {
  const lab = await createLab({ name: `vxt-${tag}${process.pid}`, nodes });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan', store: 'etcd' });
    await body(lab, overlay);
  } catch (err) {
    if (overlay) {
      for (const node of lab.nodes) process.stderr.write(`--- agent log ${node.name}\n${overlay.log(node)}`);
      process.stderr.write(`--- etcd log\n${overlay.etcd?.recentLog() ?? '(no etcd)'}\n`);
    }
    throw err;
  } finally {
    await overlay?.close(); // stops etcd too
    await lab.destroy();
  }
}

async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function tunAddressOf(overlay: Overlay, node: LabNode): Promise<string> {
  return formatIPv4((await overlay.subnetOf(node)).address);
}

async function assertPings(lab: Lab, overlay: Overlay, from: LabNode, to: LabNode, count = 3): Promise<void> {
  const result = await ping(lab, from, await tunAddressOf(overlay, to), { count, intervalSeconds: 0.1 });
  assert.is(result.received, count, `${from.name} -> ${to.name}: ${result.received}/${count}`);
}

const connected = (overlay: Overlay, node: LabNode, want: boolean) => async (): Promise<boolean> =>
  ((await overlay.status(node)) as AgentStatus).storeConnected === want;

Etcd('three agents on etcd over VXLAN ping every pair', async () => {
  await withEtcdOverlay('et', 3, async (lab, overlay) => {
    assert.is(overlay.storeUrl, 'etcd://192.0.2.2:2379');
    for (const node of lab.nodes) await overlay.startAgent(node);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 2);
    for (const from of lab.nodes) for (const to of lab.nodes) if (from !== to) await assertPings(lab, overlay, from, to);
    for (const node of lab.nodes) assert.ok((await overlay.status(node)).storeConnected, `${node.name} connected`);
    const leases = await overlay.withStore((store) => store.list(`${DEFAULT_PREFIX}/subnets/`));
    assert.is(leases.kvs.length, 3, 'three leases in etcd');
  });
});

Etcd('etcd outage: forwarding goes on, agents report it, reconnect, catch up on a deletion and a new node', async () => {
  await withEtcdOverlay('eo', 3, async (lab, overlay) => {
    const [n1, n2, n3] = lab.nodes;
    // A node that exists only as a lease: its deletion while the agents cannot see etcd must reach them afterwards.
    const ghost = parseCidr('10.17.254.0/24');
    const ghostAttrs = formatLeaseAttrs({ publicIp: parseIPv4('192.0.2.99'), backendType: 'vxlan', backendData: { vni: 1, vtepMac: parseMac('0e:00:00:00:99:99') } });
    await overlay.withStore((store) => store.put(subnetKey(DEFAULT_PREFIX, ghost), ghostAttrs, { ttlSeconds: 3600 }));
    await overlay.startAgent(n1);
    await overlay.startAgent(n2);
    await overlay.waitForRoutes(n1, 2);
    await overlay.waitForRoutes(n2, 2);
    await assertPings(lab, overlay, n1, n2);

    const etcd = overlay.etcd!;
    const stoppedAt = Date.now();
    await etcd.stop(); // the data dir is the overlay's: kept for the restart
    await eventually('n1 to report the store unreachable', 5_000, connected(overlay, n1, false));
    await eventually('n2 to report the store unreachable', 5_000, connected(overlay, n2, false));
    const noticedMs = Date.now() - stoppedAt;
    // Forwarding goes on with the last known tables, both ways, for seconds.
    const [there, back] = await Promise.all([
      ping(lab, n1, await tunAddressOf(overlay, n2), { count: 15, intervalSeconds: 0.2 }),
      ping(lab, n2, await tunAddressOf(overlay, n1), { count: 15, intervalSeconds: 0.2 }),
    ]);
    assert.is(there.received, 15, `n1 -> n2 during the outage: ${there.received}/15`);
    assert.is(back.received, 15, `n2 -> n1 during the outage: ${back.received}/15`);
    for (const node of [n1, n2]) {
      assert.match(overlay.log(node), /store unreachable: forwarding goes on/, `${node.name} says forwarding goes on`);
      assert.is((await overlay.status(node)).routes.length, 2, `${node.name} keeps its routes`);
    }

    // A partition keeps the agents away from etcd once it is back (the switch ports to the nodes go down; the
    // control node itself, and our relay in it, still reach etcd): the deletion is made while they cannot see it.
    const ports = (state: 'up' | 'down') => Promise.all([n1, n2, n3].map((node) => run('ip', ['-n', lab.hubNetns, 'link', 'set', node.name, state])));
    await ports('down');
    try {
      await etcd.restart(); // same ports, same data
      await overlay.withStore((store) => store.delete(subnetKey(DEFAULT_PREFIX, ghost)));
      for (const node of [n1, n2]) {
        const status = await overlay.status(node);
        assert.not.ok(status.storeConnected, `${node.name} still cut off when the lease is deleted`);
        assert.is(status.routes.length, 2, `${node.name} has not heard of the deletion yet`);
      }
    } finally {
      await ports('up');
    }
    await eventually('n1 to reconnect', 15_000, connected(overlay, n1, true));
    await eventually('n2 to reconnect', 15_000, connected(overlay, n2, true));
    await overlay.waitForRoutes(n1, 1, 5_000);
    await overlay.waitForRoutes(n2, 1, 5_000);

    // A node joining after the outage: both old agents route to it.
    await overlay.startAgent(n3);
    for (const node of lab.nodes) await overlay.waitForRoutes(node, 2);
    for (const from of lab.nodes) for (const to of lab.nodes) if (from !== to) await assertPings(lab, overlay, from, to, 2);
    process.stdout.write(`  (agents noticed the outage within ${noticedMs} ms)\n`);
  });
});

Etcd('an agent started while etcd is down waits for it (as flanneld does) and serves once it answers', async () => {
  await withEtcdOverlay('ew', 2, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.startAgent(n1);
    const etcd = overlay.etcd!;
    await etcd.stop(); // data kept for the restart
    // The agent must not exit while etcd is away: start it, bring etcd back 4 s later, and it comes up.
    const starting = overlay.startAgent(n2, ['--store-wait', '60']);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.is(overlay.agents.get(n2.name)!.process.exitCode, null, 'n2 still waiting, not exited');
    await etcd.restart();
    await starting;
    await overlay.waitForRoutes(n2, 1, 15_000);
    await overlay.waitForRoutes(n1, 1, 15_000);
    await assertPings(lab, overlay, n2, n1);
    assert.match(overlay.log(n2), /store unreachable at start: cannot read the network config yet; retrying for up to \d+ s more \(--store-wait\)/);
  });
});

Etcd('--store-wait 0: an agent whose store does not answer exits at once with the reason', async () => {
  await withEtcdOverlay('e0', 1, async (lab, overlay) => {
    const [n1] = lab.nodes;
    await overlay.etcd!.stop();
    await overlay.startAgent(n1, ['--store-wait', '0']).then(
      () => assert.unreachable('the agent started without its store'),
      (error: Error) => assert.match(error.message, /exited with 1[\s\S]*is unreachable/),
    );
  });
});

Etcd('dual stack on etcd: each agent acquires an IPv6 subnet beside its IPv4 one in flannel\'s key; a dual-stack flanneld lease is followed', async () => {
  await withEtcdOverlay('e6', 2, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.withStore((store) =>
      store.put(`${DEFAULT_PREFIX}/config`, `{"Network":"${overlay.network}","EnableIPv6":true,"IPv6Network":"fd00:10:17::/56","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`),
    );
    for (const node of lab.nodes) await overlay.startAgent(node);
    const s1 = await overlay.waitForRoutes(n1, 1);
    const s2 = await overlay.waitForRoutes(n2, 1);
    const keys = await overlay.withStore(async (store) => (await store.list(`${DEFAULT_PREFIX}/subnets/`)).kvs.map((kv) => kv.key).sort());
    const expected = [s1, s2].map((s) => `${DEFAULT_PREFIX}/subnets/${s.lease.subnet.replace('/', '-')}&${s.lease.subnet6!.replace('/', '-')}`).sort();
    assert.equal(keys, expected, 'one flannel dual-stack key per node');
    assert.match(s1.lease.subnet6!, /^fd00:10:17:[0-9a-f]{1,2}::\/64$/);
    // A lease as a dual-stack flanneld writes it (lease-ipv6.test.ts cites the layout), on a subnet no agent holds.
    const taken = new Set([s1.lease.subnet, s2.lease.subnet]);
    const v4 = ['10.17.200.0/24', '10.17.201.0/24'].find((c) => !taken.has(c))!;
    const taken6 = new Set([s1.lease.subnet6, s2.lease.subnet6]);
    const v6 = ['fd00:10:17:c8::/64', 'fd00:10:17:c9::/64'].find((c) => !taken6.has(c))!;
    await overlay.withStore((store) =>
      store.put(
        `${DEFAULT_PREFIX}/subnets/${v4.replace('/', '-')}&${v6.replace('/', '-')}`,
        '{"PublicIP":"192.0.2.99","PublicIPv6":"2001:db8::99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9e:5a:3c:1d:22:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"9e:5a:3c:1d:22:02"}}',
        { ttlSeconds: 600 },
      ),
    );
    await eventually('the flanneld lease in routes6', 10_000, async () => ((await overlay.status(n1)) as AgentStatus).routes6?.some((r) => r.subnet === v6) === true);
    const status = (await overlay.status(n1)) as AgentStatus;
    assert.ok(status.neighbors6?.some((n) => n.address === v6.replace('/64', '') && n.mac === '9e:5a:3c:1d:22:02'), JSON.stringify(status.neighbors6));
    // No --public-ipv6 here (no IPv6 underlay socket): its IPv6 VTEP is reached at its PublicIP.
    assert.ok(status.fdb.some((f) => f.mac === '9e:5a:3c:1d:22:02' && f.dst === '192.0.2.99'), JSON.stringify(status.fdb));
  });
});

Etcd.run();
