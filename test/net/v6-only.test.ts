// IPv6-only networks on real agents in namespaces (issue 12, "EnableIPv4": false), as flannel's vxlan backend runs
// them with flannel-v6.<VNI> alone: the lease in flannel's IPv6-only layout (key 0.0.0.0-0&<v6>-64, PublicIP 0.0.0.0,
// BackendV6Data only), subnet.env with only the IPv6 lines, a TUN with only <subnet6>::/128 and the IPv6 cluster
// route (no IPv4 address, no IPv4 route: the "network" 0.0.0.0/0 must never become a route), no IPv4 underlay socket,
// IPv6 pings between the TUNs over the IPv6 underlay, the subnet kept across a restart; --public-ipv6 required,
// --public-ip optional (and ignored, with a warning); host-gw IPv6-only routes via PublicIPv6.
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, NO_IPV4_SUBNET, configKey, subnetKey } from '../../src/control/lease';
import { CLI_PATH } from '../../src/lab/overlay';
import type { Lab } from '../../src/lab/topology';
import { formatIPv6, parseCidr6 } from '../../src/wire/address6';
import { withOverlay } from '../support/overlay';

const V6 = suite('IPv6-only agents');
const NETWORK6 = 'fd00:10:18::/56';

/** Gives each node 2001:db8:1::<index>/64 on its underlay device (the documentation range). */
async function addUnderlay6(lab: Lab): Promise<void> {
  for (const node of lab.nodes) await lab.exec(node, 'ip', ['-6', 'addr', 'add', `2001:db8:1::${node.index}/64`, 'dev', node.underlayDev, 'nodad']);
}

V6('vxlan IPv6-only: flannel\'s lease layout, IPv6-only subnet.env, TUN with no IPv4, no IPv4 socket, ping6, restart', async () => {
  await withOverlay('6o', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`),
    );
    await addUnderlay6(lab);
    // The lab passes --public-ip too: an IPv6-only agent warns that it does not use it.
    for (const node of lab.nodes) await overlay.startAgent(node, ['--public-ipv6', `2001:db8:1::${node.index}`]);
    await overlay.waitForSubnets(n1, [{ subnet6: parseCidr6((await overlay.status(n2)).lease.subnet6!) }]);
    const s1 = await overlay.status(n1);
    const s2 = await overlay.status(n2);
    assert.is(s1.lease.subnet, '-', 'no IPv4 subnet');
    assert.ok(s1.lease.subnet6 !== undefined && s1.lease.subnet6 !== s2.lease.subnet6);
    assert.match(overlay.log(n1), /--public-ip is not used: the network is IPv6-only/);

    // flannel's IPv6-only key and value (MakeSubnetKey of an empty IP4Net; PublicIP 0.0.0.0; no IPv4 VTEP).
    const sub6 = parseCidr6(s1.lease.subnet6!);
    const key = subnetKey(DEFAULT_PREFIX, NO_IPV4_SUBNET, sub6);
    assert.ok(key.endsWith(`/subnets/0.0.0.0-0&${formatIPv6(sub6.address)}-64`), key);
    const kv = await overlay.withStore((store) => store.get(key));
    assert.ok(kv, `no lease at ${key}`);
    const value = JSON.parse(kv!.value) as Record<string, unknown>;
    assert.is(value.PublicIP, '0.0.0.0');
    assert.is(value.PublicIPv6, '2001:db8:1::1');
    assert.is(value.BackendData, undefined, 'no IPv4 VTEP, no BackendData');
    assert.is((value.BackendV6Data as { VtepMAC?: string }).VtepMAC, s1.lease.vtepMac6);

    // subnet.env: only the IPv6 lines; flanneld's masquerade rules for IPv6 only, so FLANNEL_IPMASQ=true.
    const env = readFileSync(overlay.subnetFile(n1), 'utf8');
    assert.not.match(env, /FLANNEL_NETWORK=|FLANNEL_SUBNET=/);
    assert.match(env, `FLANNEL_IPV6_NETWORK=${NETWORK6}\nFLANNEL_IPV6_SUBNET=${formatIPv6(sub6.address + 1n)}/64\n`);
    assert.match(env, /FLANNEL_IPMASQ=true\n/);
    const { stdout: rules6 } = await lab.exec(n1, 'ip6tables-save', ['-t', 'nat']);
    assert.match(rules6, new RegExp(`-A FLANNEL-POSTRTG -s ${NETWORK6.replace(/[.:/]/g, '\\$&')} .*MASQUERADE`), rules6);
    const { stdout: rules4 } = await lab.exec(n1, 'iptables-save', ['-t', 'nat']);
    assert.not.match(rules4, /FLANNEL-POSTRTG/, 'no IPv4 rules in an IPv6-only network');

    // The TUN: only <subnet6>::/128 and the IPv6 cluster route; nothing IPv4 (above all no 0.0.0.0/0 route).
    const { stdout: v4addr } = await lab.exec(n1, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'vxtun0']);
    assert.is(v4addr.trim(), '', 'no IPv4 address on the TUN');
    const { stdout: v4routes } = await lab.exec(n1, 'ip', ['-4', 'route', 'show', 'dev', 'vxtun0']);
    assert.is(v4routes.trim(), '', 'no IPv4 route into the TUN');
    const { stdout: v6addr } = await lab.exec(n1, 'ip', ['-6', '-o', 'addr', 'show', 'dev', 'vxtun0', 'scope', 'global']);
    assert.match(v6addr, `inet6 ${formatIPv6(sub6.address)}/128`);
    const { stdout: v6route } = await lab.exec(n1, 'ip', ['-6', 'route', 'show', NETWORK6]);
    assert.match(v6route, /dev vxtun0/);

    // The underlay: [PublicIPv6]:8472 only, no IPv4 socket.
    const { stdout: sockets } = await lab.exec(n1, 'ss', ['-Hlun']);
    assert.match(sockets, /\[2001:db8:1::1\]:8472/);
    assert.not.match(sockets, /192\.0\.2\.\d+:/, `no IPv4 underlay socket:\n${sockets}`);

    // The tables: IPv6 only, the peer reached at its PublicIPv6.
    const sub2 = parseCidr6(s2.lease.subnet6!);
    assert.equal(s1.routes, []);
    assert.equal(s1.routes6, [{ subnet: s2.lease.subnet6!, via: formatIPv6(sub2.address), encap: 'vxlan' }]);
    assert.equal(s1.fdb6, [{ mac: s2.lease.vtepMac6!, dst: '2001:db8:1::2' }]);

    // IPv6 between the TUN addresses, through both engines, over the IPv6 underlay.
    const ping = await lab.exec(n1, 'ping', ['-6', '-n', '-c', '3', '-i', '0.2', '-W', '2', formatIPv6(sub2.address)]).catch((err: Error) => ({ stdout: err.message }));
    assert.match(ping.stdout, / 3 received/, ping.stdout);

    // `vxtun status` text says IPv6-only and shows no IPv4 placeholder.
    const { stdout: text } = await lab.exec(n1, process.execPath, [CLI_PATH, 'status', '--socket', overlay.agents.get(n1.name)!.statusSocket]);
    assert.match(text, /^lease {4}fd00:10:18:[0-9a-f:]+\/64 \(IPv6-only\)/m);
    assert.not.match(text, /0\.0\.0\.0/);
    assert.match(text, /^ip-masq  on, /m);

    // A restart keeps the IPv6 subnet (the node name finds the lease, subnet.env names it too).
    await overlay.stopAgent(n1);
    await overlay.startAgent(n1, ['--public-ipv6', '2001:db8:1::1']);
    assert.is((await overlay.status(n1)).lease.subnet6, s1.lease.subnet6);
  });
});

V6('IPv6-only needs --public-ipv6; an IPv4 network needs --public-ip; neither address is refused by the CLI', async () => {
  await withOverlay('6p', 1, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1] = lab.nodes;
    await addUnderlay6(lab);
    const run = async (extra: string[]): Promise<string> => {
      const args = [CLI_PATH, 'agent', '--store', overlay.storeUrl, '--subnet-file', `${overlay.workDir}/p.env`, '--status-socket', `${overlay.workDir}/p.sock`, '--store-wait', '0', ...extra];
      return lab.exec(n1, process.execPath, args, { timeoutMs: 10_000 }).then(
        (r) => `exit 0: ${r.stdout}`,
        (err: Error & { stderr?: string; stdout?: string }) => `${err.stderr ?? ''}${err.stdout ?? ''}${err.message}`,
      );
    };
    assert.match(await run([]), /pass --public-ip with this node's IPv4 underlay address \(in an IPv6-only network, --public-ipv6/);
    await overlay.withStore((store) => store.put(configKey(DEFAULT_PREFIX), `{"Network":"${overlay.network}","Backend":{"Type":"vxlan"}}`));
    assert.match(await run(['--public-ipv6', '2001:db8:1::1']), /the network carries IPv4: pass --public-ip/);
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"vxlan"}}`),
    );
    assert.match(await run(['--public-ip', n1.underlayIp]), /the network is IPv6-only \("EnableIPv4": false\): pass --public-ipv6/);
    assert.match(await run(['--public-ipv6', '2001:db8:1::99']), /no interface of this host has the address 2001:db8:1::99/);
  });
});

V6('host-gw IPv6-only: each IPv6 subnet routed via its node\'s PublicIPv6, nothing IPv4 programmed', async () => {
  await withOverlay('6g', 2, { backend: 'host-gw' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await overlay.withStore((store) =>
      store.put(configKey(DEFAULT_PREFIX), `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"${NETWORK6}","Backend":{"Type":"host-gw"}}`),
    );
    await addUnderlay6(lab);
    for (const node of lab.nodes) await overlay.startAgent(node, ['--public-ipv6', `2001:db8:1::${node.index}`]);
    const s2 = await overlay.status(n2);
    const deadline = Date.now() + 10_000;
    let s1 = await overlay.status(n1);
    while ((s1.routes6 ?? []).length < 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      s1 = await overlay.status(n1);
    }
    assert.equal(s1.routes6, [{ subnet: s2.lease.subnet6!, via: '2001:db8:1::2', encap: 'direct', dev: n1.underlayDev }]);
    assert.equal(s1.routes, []);
    const { stdout } = await lab.exec(n1, 'ip', ['-6', 'route', 'show', s2.lease.subnet6!]);
    assert.match(stdout, `via 2001:db8:1::2 dev ${n1.underlayDev}`);
    const env = readFileSync(overlay.subnetFile(n1), 'utf8');
    assert.not.match(env, /FLANNEL_NETWORK=/);
    assert.match(env, /FLANNEL_IPV6_SUBNET=/);
  });
});

V6.run();
