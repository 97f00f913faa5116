// An IPv6-only agent (issue 12, "EnableIPv4": false) as the CLI shows and finds it: `vxtun status` prints one IPv6
// lease line and only the IPv6 tables; `vxtun agent` asks for an underlay address before it starts and names its
// status socket by --public-ipv6 when there is no --public-ip; `vxtun status --public-ipv6` finds that socket.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { publicAddressProblem, statusSocketName } from '../../src/cli/commands/agent';
import { findSocket, formatStatus } from '../../src/cli/commands/status';
import { ipv6TablesStatus } from '../../src/control/agent';
import { NO_IPV4_SUBNET, type Lease } from '../../src/control/lease';
import { LeaseSync } from '../../src/control/lease-sync';
import { nullLogger } from '../../src/control/log';
import { defaultStatusSocket } from '../../src/control/status-server';
import { ForwardingTables } from '../../src/dataplane/tables';
import { parseIPv4 } from '../../src/wire/address';
import { parseCidr6, parseIPv6 } from '../../src/wire/address6';
import { agentStatus } from '../support/agent-status';

const test = suite('cli: an IPv6-only agent');

/** An IPv6-only lease as flannel writes it: key 0.0.0.0-0&<v6>-64, PublicIP 0.0.0.0, BackendV6Data only. */
function v6OnlyLease(n: number): Lease {
  return {
    subnet: NO_IPV4_SUBNET,
    subnet6: parseCidr6(`fd00:10:244:${n}::/64`),
    attrs: { publicIp: 0, publicIpv6: parseIPv6(`2001:db8::${n}`), backendType: 'vxlan', backendV6Data: { vni: 1, vtepMac: 0x020000000100 + n } },
  };
}

test('status text: one lease line (the IPv6 one), the IPv6 network, no IPv4 tables; the IPv6 tables as ip -6 prints them', () => {
  const tables = new ForwardingTables();
  new LeaseSync({ tables }, NO_IPV4_SUBNET, 'vxlan', nullLogger, undefined, { ownSubnet6: parseCidr6('fd00:10:244:1::/64'), underlay6: true })
    .applySnapshot([v6OnlyLease(1), v6OnlyLease(2)]);
  assert.is(tables.routes.size, 0, 'no IPv4 route from IPv6-only leases');
  const text = formatStatus(agentStatus({
    lease: { subnet: '-', publicIp: '0.0.0.0', nodeName: 'node-a', subnet6: 'fd00:10:244:1::/64', publicIpv6: '2001:db8::1', vtepMac6: '02:00:00:00:01:01' },
    network: { network: '0.0.0.0/0', subnetLen: 0, ipv6Network: 'fd00:10:244::/56', ipv6SubnetLen: 64, backend: { type: 'vxlan', vni: 1, port: 8472, directRouting: false } },
    tun: { name: 'vxtun0', mtu: 1430, kernelQueueDrops: 0 },
    underlay: { device: 'eth0', subnet: '2001:db8::/64', mtu: 1500, addressPresent: true },
    ipMasq: { enabled: false, unsupported: 'no masquerade rules in an IPv6-only network' },
    routes: [], neighbors: [], fdb: [],
    ...ipv6TablesStatus(tables),
  }));
  assert.match(text, /^lease {4}fd00:10:244:1::\/64 \(IPv6-only\) node node-a public-ipv6 2001:db8::1 vtep-mac 02:00:00:00:01:01 expires /m);
  assert.not.match(text, /0\.0\.0\.0/, `no IPv4 placeholder anywhere:\n${text}`);
  assert.not.match(text, /^lease6/m);
  assert.match(text, /^network  ipv6 fd00:10:244::\/56 subnet-len 64 \(IPv6-only\) backend vxlan vni 1 port 8472$/m);
  assert.match(text, /underlay eth0 2001:db8::\/64 mtu 1500/);
  assert.match(text, /^ip-masq  off \(no masquerade rules in an IPv6-only network\)$/m, 'not "--no-ip-masq": the user asked for it');
  assert.not.match(text, /^routes \(0\)$|^neighbors \(0\)$|^fdb \(0\)$/m, 'the empty IPv4 tables are not listed');
  assert.match(text, /fd00:10:244:2::\/64 via fd00:10:244:2:: dev vxtun0/);
  assert.match(text, /2001:db8::2/, 'the peer\'s PublicIPv6 in fdb6');
});

test('vxtun agent: neither --public-ip nor --public-ipv6 is refused up front; either one alone is enough to start', () => {
  assert.match(publicAddressProblem(undefined, undefined)!, /^pass --public-ip .*IPv6-only network, --public-ipv6/);
  assert.is(publicAddressProblem(parseIPv4('192.0.2.11'), undefined), undefined);
  assert.is(publicAddressProblem(undefined, parseIPv6('2001:db8:1::11')), undefined);
});

test('the status socket is named by --public-ip, else by --public-ipv6; vxtun status finds either', () => {
  assert.is(statusSocketName(parseIPv4('192.0.2.11'), parseIPv6('2001:db8:1::11')), '192.0.2.11');
  assert.is(statusSocketName(undefined, parseIPv6('2001:db8:1::11')), '2001:db8:1::11');
  assert.throws(() => statusSocketName(undefined, undefined), /no underlay address/);
  assert.is(findSocket(undefined, parseIPv6('2001:db8:1::11')), defaultStatusSocket('2001:db8:1::11'));
  assert.is(findSocket(parseIPv4('192.0.2.11')), defaultStatusSocket('192.0.2.11'));
});

test.run();
