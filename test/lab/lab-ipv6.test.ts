// The lab's IPv6 pieces without root (issue 12): flannel's dual-stack lease key and value as the kernel node reads
// and writes them, what `lab up --ipv6...` prints and refuses.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkOverlayLabOptions, exitedAgentsNote, formatNodeTable, usageHints } from '../../src/cli/commands/lab';
import { dualStackKey, type LabRecord, type LabRecordNode, parseFlannelLease } from '../../src/lab/overlay';
import { parseCidr } from '../../src/wire/address';
import { parseCidr6 } from '../../src/wire/address6';

const Lab6 = suite('lab: IPv6 leases, node table, options');

Lab6("dual-stack key as flannel's MakeSubnetKey writes it, and leases read back in each layout", () => {
  assert.is(dualStackKey(parseCidr('10.17.250.0/24'), parseCidr6('fd00:17:0:fa::/64')), '10.17.250.0-24&fd00:17:0:fa::-64');
  const value = JSON.stringify({
    PublicIP: '192.0.2.12', PublicIPv6: '2001:db8:1::12', BackendType: 'vxlan',
    BackendData: { VNI: 1, VtepMAC: '0E:00:00:00:FE:01' }, BackendV6Data: { VNI: 1, VtepMAC: '0e:00:00:00:fe:61' },
  });
  assert.equal(parseFlannelLease('/coreos.com/network/subnets/10.17.250.0-24&fd00:17:0:fa::-64', value), {
    subnet: parseCidr('10.17.250.0/24'), subnet6: parseCidr6('fd00:17:0:fa::/64'), publicIp: '192.0.2.12', publicIpv6: '2001:db8:1::12',
    vtepMac: '0e:00:00:00:fe:01', vtepMac6: '0e:00:00:00:fe:61',
  });
  const v4 = parseFlannelLease('/coreos.com/network/subnets/10.17.3.0-24', '{"PublicIP":"192.0.2.11","BackendData":{"VtepMAC":"0e:00:00:00:00:03"}}');
  assert.equal(v4, { subnet: parseCidr('10.17.3.0/24'), publicIp: '192.0.2.11', vtepMac: '0e:00:00:00:00:03' });
  const v6only = parseFlannelLease('/coreos.com/network/subnets/fd00:17:0:3::-64', '{"PublicIPv6":"2001:db8:1::11","BackendV6Data":{"VtepMAC":"0e:00:00:00:00:63"}}');
  assert.equal(v6only, { subnet6: parseCidr6('fd00:17:0:3::/64'), publicIpv6: '2001:db8:1::11', vtepMac6: '0e:00:00:00:00:63' });
  assert.is(parseFlannelLease('/x/subnets/garbage', '{}'), undefined);
  assert.is(parseFlannelLease('/x/subnets/10.17.3.0-24', '{"PublicIPv6":"not-an-address"}'), undefined);
});

function node(i: number): LabRecordNode {
  return {
    name: `n${i}`, netns: `vxt-t-n${i}`, underlayIp: `192.0.2.${10 + i}`, underlayIp6: `2001:db8:1::${10 + i}`, kind: 'vxtun',
    subnet: `10.17.${i}.0/24`, tunAddress: `10.17.${i}.0`, subnet6: `fd00:17:0:${i}::/64`, tunAddress6: `fd00:17:0:${i}::`,
    pod: `10.17.${i}.2`,
    pods: [{ name: `n${i}-p1`, node: `n${i}`, netns: `vxt-t-n${i}-p1`, address: `10.17.${i}.2`, address6: `fd00:17:0:${i}::2` } as never],
  };
}

function record(ipv6: LabRecord['ipv6']): LabRecord {
  return { name: 'vxt-t', backend: 'vxlan', network: '10.17.0.0/16', vni: 1, port: 4789, storeUrl: 'file:/x', createdAt: '', nodes: [node(1), node(2)], ipv6 };
}

Lab6('the node table shows IPv6 underlay addresses, subnets and pod addresses; hints ping over IPv6; options are remembered', () => {
  const r = record({ network: 'fd00:17::/56', only: false, underlay: true });
  const table = formatNodeTable(r);
  assert.match(table, 'underlay IPv6');
  assert.match(table, '2001:db8:1::11');
  assert.match(table, 'fd00:17:0:2::/64');
  assert.match(table, 'n1-p1 10.17.1.2 fd00:17:0:1::2');
  const hints = usageHints(r);
  assert.match(hints, 'ping -c 3 fd00:17:0:2::2');
  assert.match(hints, 'VXLAN over the IPv6 underlay');
  const gone = { ...r, nodes: r.nodes.map((n) => ({ ...n, pid: 999_999_999 })) };
  assert.match(exitedAgentsNote(gone) ?? '', '--ipv6 --ipv6-underlay');
  assert.not.match(formatNodeTable(record(undefined)), 'underlay IPv6', 'IPv4 labs keep their table');
});

Lab6('IPv6 labs need the vxlan backend; an IPv6-only kernel peer is refused', () => {
  assert.throws(() => checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'ipip', ipv6: {} }), /need --backend vxlan/);
  assert.throws(() => checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'vxlan', kernelPeer: true, ipv6: { only: true } }), /--ipv6-only is not built/);
  checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'vxlan', kernelPeer: true, ipv6: { underlay: true } });
});

Lab6.run();
