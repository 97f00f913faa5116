// The dual-stack control plane on real agents in namespaces (issue 12 item 3): a dual-stack lease per node in
// flannel's key and value, subnet.env's IPv6 lines, the TUN given <subnet6>::/128 and the cluster IPv6 route, the
// IPv6 tables in `vxtun status` (IPv6 pods over the IPv4 underlay when no --public-ipv6 is given), the subnet kept
// across a restart, and --public-ipv6 checked against the host's addresses. IPv6 pings between the TUN addresses
// prove the kernel routes IPv6 into the TUN and the tables the control plane built are the ones the engine follows.
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, configKey, parseLeaseAttrs, subnetKey } from '../../src/control/lease';
import { CLI_PATH } from '../../src/lab/overlay';
import { parseCidr } from '../../src/wire/address';
import { formatIPv6, parseCidr6 } from '../../src/wire/address6';
import { withOverlay } from '../support/overlay';

const V6 = suite('v6 control plane');
const NETWORK6 = 'fd00:10:17::/56';

V6('dual stack over the IPv4 underlay: leases, subnet.env, TUN address and route, status tables, restart, ping6', async () => {
  await withOverlay('6c', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"Network":"${overlay.network}","EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`),
    );
    for (const node of lab.nodes) await overlay.startAgent(node);
    const s1 = await overlay.waitForRoutes(n1, 1);
    const s2 = await overlay.waitForRoutes(n2, 1);
    assert.ok(s1.lease.subnet6 && s2.lease.subnet6, 'both leases have an IPv6 subnet');
    assert.is.not(s1.lease.subnet6, s2.lease.subnet6);
    assert.is(s1.network.ipv6Network, NETWORK6);

    // The lease in flannel's layout: one key naming both subnets, BackendV6Data with the v6 VTEP MAC.
    const key = subnetKey(DEFAULT_PREFIX, parseCidr(s1.lease.subnet), parseCidr6(s1.lease.subnet6!));
    const kv = await overlay.withStore((store) => store.get(key));
    assert.ok(kv, `no lease at ${key}`);
    const attrs = parseLeaseAttrs(kv!.value);
    assert.ok(attrs.backendV6Data?.vtepMac !== undefined);
    assert.is.not(attrs.backendV6Data!.vtepMac, attrs.backendData!.vtepMac);
    assert.is(attrs.publicIpv6, undefined, 'no --public-ipv6: no PublicIPv6');

    // subnet.env: flannel's IPv6 lines, first usable address.
    const sub6 = parseCidr6(s1.lease.subnet6!);
    const env = readFileSync(overlay.subnetFile(n1), 'utf8');
    assert.match(env, `FLANNEL_IPV6_NETWORK=${NETWORK6}\n`);
    assert.match(env, `FLANNEL_IPV6_SUBNET=${formatIPv6(sub6.address + 1n)}/64\n`);

    // The TUN holds <subnet6>::/128 and the cluster IPv6 network is routed into it.
    const { stdout: addr } = await lab.exec(n1, 'ip', ['-6', '-o', 'addr', 'show', 'dev', 'vxtun0']);
    assert.match(addr, `inet6 ${formatIPv6(sub6.address)}/128`);
    const { stdout: route } = await lab.exec(n1, 'ip', ['-6', 'route', 'show', NETWORK6]);
    assert.match(route, /dev vxtun0/);

    // The tables: n2's IPv6 subnet via <subnet>::, its v6 VTEP MAC, reached at its IPv4 underlay address (fdb).
    const sub2 = parseCidr6(s2.lease.subnet6!);
    assert.equal(s1.routes6, [{ subnet: s2.lease.subnet6!, via: formatIPv6(sub2.address), encap: 'vxlan' }]);
    assert.equal(s1.neighbors6, [{ address: formatIPv6(sub2.address), mac: s2.lease.vtepMac6! }]);
    assert.equal(s1.fdb6, []);
    assert.ok(s1.fdb.some((f) => f.mac === s2.lease.vtepMac6 && f.dst === s2.lease.publicIp), JSON.stringify(s1.fdb));

    // IPv6 between the two TUN addresses, through both engines, over the IPv4 underlay.
    const ping = await lab.exec(n1, 'ping', ['-6', '-n', '-c', '3', '-i', '0.2', '-W', '2', formatIPv6(sub2.address)]).catch((err: Error) => ({ stdout: err.message }));
    assert.match(ping.stdout, / 3 received/, ping.stdout);

    // A packet to an IPv6 subnet nobody leases is dropped and counted by stage and reason, in status and metrics alike.
    const unleased = [...Array(256).keys()].map((i) => `fd00:10:17:${i.toString(16)}::`).find((a) => a !== formatIPv6(sub6.address) && a !== formatIPv6(sub2.address) && a !== 'fd00:10:17:0::')!;
    await lab.exec(n1, 'ping', ['-6', '-n', '-c', '1', '-W', '1', `${unleased}1`]).catch(() => undefined);
    const drops = ((await overlay.status(n1)).counters as { drops: Record<string, number> }).drops;
    assert.ok((drops['route6/no-match'] ?? 0) >= 1, JSON.stringify(drops));

    // A restart keeps both subnets (the lease is found again by node name).
    await overlay.stopAgent(n1);
    await overlay.startAgent(n1);
    const again = await overlay.waitForRoutes(n1, 1);
    assert.equal([again.lease.subnet, again.lease.subnet6], [s1.lease.subnet, s1.lease.subnet6]);
  });
});

V6('host-gw with IPv6: each IPv6 subnet routed via its node\'s PublicIPv6 on the underlay, as flannel\'s host-gw', async () => {
  await withOverlay('6h', 2, { backend: 'host-gw' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"Network":"${overlay.network}","EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"host-gw"}}`),
    );
    for (const node of lab.nodes) {
      await lab.exec(node, 'ip', ['-6', 'addr', 'add', `2001:db8:1::${node.index}/64`, 'dev', node.underlayDev, 'nodad']);
      await overlay.startAgent(node, ['--public-ipv6', `2001:db8:1::${node.index}`]);
    }
    await overlay.waitForRoutes(n1, 1);
    const s2 = await overlay.waitForRoutes(n2, 1);
    const deadline = Date.now() + 10_000;
    let s1 = await overlay.status(n1);
    while ((s1.routes6 ?? []).length < 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      s1 = await overlay.status(n1);
    }
    assert.equal(s1.routes6, [{ subnet: s2.lease.subnet6!, via: '2001:db8:1::2', encap: 'direct', dev: n1.underlayDev }]);
    assert.is(s2.lease.publicIpv6, '2001:db8:1::2');
    const { stdout } = await lab.exec(n1, 'ip', ['-6', 'route', 'show', s2.lease.subnet6!]);
    assert.match(stdout, `via 2001:db8:1::2 dev ${n1.underlayDev}`);
    // The route goes with the node: its lease deleted, the kernel route is removed.
    await overlay.stopAgent(n2);
    await overlay.withStore((store) => store.delete(subnetKey(DEFAULT_PREFIX, parseCidr(s2.lease.subnet), parseCidr6(s2.lease.subnet6!))));
    const gone = Date.now() + 10_000;
    let left = stdout;
    while (left.trim() !== '' && Date.now() < gone) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      left = (await lab.exec(n1, 'ip', ['-6', 'route', 'show', s2.lease.subnet6!])).stdout;
    }
    assert.is(left.trim(), '', 'the IPv6 route left with the lease');
  });
});

V6('--public-ipv6 must be an address of this host; --public-ipv6 in an IPv4-only network is refused', async () => {
  await withOverlay('6r', 1, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1] = lab.nodes;
    const run = async (extra: string[]): Promise<string> => {
      const args = [CLI_PATH, 'agent', '--store', overlay.storeUrl, '--public-ip', n1.underlayIp, '--subnet-file', `${overlay.workDir}/r.env`, '--status-socket', `${overlay.workDir}/r.sock`, ...extra];
      const result = await lab.exec(n1, process.execPath, args).then(
        (r) => `exit 0: ${r.stdout}`,
        (err: Error & { stderr?: string; stdout?: string }) => `${err.stderr ?? ''}${err.stdout ?? ''}${err.message}`,
      );
      return result;
    };
    assert.match(await run(['--public-ipv6', '2001:db8:1::99']), /--public-ipv6 was given but the network carries no IPv6/);
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"Network":"${overlay.network}","EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"vxlan"}}`),
    );
    assert.match(await run(['--public-ipv6', '2001:db8:1::99']), /no interface of this host has the address 2001:db8:1::99: pass --public-ipv6/);
    assert.match(await run(['--public-ipv6', 'fe80::1']), /--public-ipv6 fe80::1 is in the link-local range/);
  });
});

V6.run();
